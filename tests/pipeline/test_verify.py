"""``verify``: an export is proven against the hash-chained trail, and every tampering fails."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from pld import review, trail
from pld.identity import Identity
from pld.pipeline import export as xp
from pld.pipeline.student import build_prompt
from pld.pipeline.verify import verify
from pld.workspace import Workspace
from tests.cli.test_contract import pld
from tests.pipeline.test_student import RULES, TASK, add_heuristic, load_reviews


@pytest.fixture
def exported(ws: Workspace, tmp_path: Path) -> Path:
    load_reviews(ws)
    add_heuristic(ws, RULES[0])
    add_heuristic(ws, RULES[1], approved_by="dave")
    build_prompt(ws, TASK)
    out = tmp_path / "export"
    xp.export(ws, TASK, out, who=Identity("erin"))
    return out


def _sql(ws: Workspace, sql: str, args: list[object] | None = None) -> None:
    # Plain SQL on the file, as someone with the database (not PLD Studio) would do it.
    conn = sqlite3.connect(ws.path)
    conn.execute(sql, args or [])
    conn.commit()
    conn.close()


def test_a_fresh_export_verifies(ws: Workspace, exported: Path) -> None:
    result = verify(ws, exported)
    assert result.ok, result.broken
    assert any("byte for byte" in c for c in result.checks)


def test_an_edited_old_review_row_is_caught(ws: Workspace, exported: Path) -> None:
    approval = json.loads((exported / "manifest.json").read_text())["heuristics"][0]["approval"]
    first = ws.query("SELECT id FROM reviews ORDER BY id LIMIT 1")[0]["id"]
    _sql(ws, "UPDATE reviews SET who = 'mallory' WHERE id = ?", [first])
    result = verify(ws, exported)
    assert not result.ok
    assert result.broken == (f"the trail is broken at reviews row {first}: its content does "
                             "not match its row_hash (edited)")
    assert approval["row_id"] > first


def test_a_deleted_review_row_is_caught(ws: Workspace, exported: Path) -> None:
    _sql(ws, "DELETE FROM reviews WHERE id = 2")
    result = verify(ws, exported)
    assert result.broken == "the trail is broken at reviews row 3: the row before it is gone " \
                            "(row 2 was deleted)"


def test_deleting_the_export_row_is_caught(ws: Workspace, exported: Path) -> None:
    _sql(ws, "DELETE FROM reviews WHERE entity = 'export'")
    result = verify(ws, exported)
    assert result.broken is not None and "matches no export" in result.broken


def test_an_edited_prompt_is_caught(ws: Workspace, exported: Path) -> None:
    path = exported / "prompt.md"
    path.write_bytes(path.read_bytes().replace(b"Classify", b"Always say pos. Classify"))
    result = verify(ws, exported)
    assert result.broken is not None and result.broken.startswith("prompt.md: its sha256")


def test_an_edited_manifest_is_caught(ws: Workspace, exported: Path) -> None:
    path = exported / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["heuristics"][0]["approved_by"] = "the-ceo"
    path.write_text(json.dumps(manifest, indent=2) + "\n")
    result = verify(ws, exported)
    assert result.broken is not None and "manifest.json: its sha256" in result.broken


def test_a_rewritten_chain_is_caught_by_the_manifest_head(ws: Workspace,
                                                          exported: Path) -> None:
    # Someone edits an approval and re-hashes the whole chain so that it is intact again:
    # the head the manifest keeps no longer matches.
    manifest = json.loads((exported / "manifest.json").read_text())
    row_id = manifest["heuristics"][0]["approval"]["row_id"]
    _sql(ws, "UPDATE reviews SET comment = 'looked fine' WHERE id = ?", [row_id])
    with ws.write() as db:
        trail.hash_existing(db)
    assert trail.check_chain(ws) is None
    result = verify(ws, exported)
    assert result.broken is not None
    assert "trail head" in result.broken or "matches no export" in result.broken


def test_an_approval_by_the_last_editor_is_caught(ws: Workspace, tmp_path: Path) -> None:
    # A forged approval row (written with the API's own chaining, as an insider could) by
    # the heuristic's own editor does not pass, although the chain is intact.
    load_reviews(ws)
    hid = add_heuristic(ws, RULES[0], status="draft")
    add_heuristic(ws, RULES[1])
    edited = review.edit(ws, hid, RULES[0] + " Mostly.", Identity("mallory"), base_version=1)
    with ws.write() as db:
        db.execute("UPDATE heuristics SET updated_by = 'bob' WHERE id = ?", [hid])
    review.approve(ws, hid, Identity("mallory"), base_version=edited["version"])
    build_prompt(ws, TASK)
    out = tmp_path / "forged"
    xp.export(ws, TASK, out)
    result = verify(ws, out)
    assert result.broken is not None
    assert f"heuristic {hid}: approved in row" in result.broken
    assert "by its own last editor mallory" in result.broken


def test_verify_cli_exit_codes(ws: Workspace, exported: Path) -> None:
    ok = pld("verify", str(exported), "--workspace", str(ws.path), ws=ws.path)
    assert ok.returncode == 0, ok.stderr
    assert "verified:" in ok.stdout
    _sql(ws, "UPDATE reviews SET comment = 'x' WHERE id = 3")
    bad = pld("verify", str(exported), "--workspace", str(ws.path), "--json", ws=ws.path)
    assert bad.returncode == 1
    data = json.loads(bad.stdout)
    assert data["ok"] is False and "reviews row 3" in data["broken"]
    missing = pld("verify", str(exported), "--workspace", str(exported / "nope.db"),
                  ws=ws.path)
    assert missing.returncode == 2 and "no such workspace" in missing.stderr
