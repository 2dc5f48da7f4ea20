"""``verify``: an export is proven against the hash-chained trail, and every tampering fails."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from pld import preamble, review, review_rows, signoff, trail
from pld.authorship import written_in_trail
from pld.identity import Identity
from pld.pipeline import export as xp
from pld.pipeline.student import build_prompt, get_prompt
from pld.pipeline.verify import verify
from pld.tasks import load_custom
from pld.workspace import Workspace, now
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


def _approved_unchecked(ws: Workspace, entity: str, item_id: int, who: Identity) -> None:
    """An approval row written without the sign-off checks, as an older PLD Studio let one
    through (approving and export refuse it now): chained, so the trail is intact."""
    with ws.write() as db:
        review_rows.apply_change(ws, db, review_rows.fetch(ws, item_id, entity),
                                 {"status": "approved", "approved_by": who.name,
                                  "approved_at": now(), "identity_kind": who.kind},
                                 who=who, action="approve", comment=None)


def _export_unchecked(ws: Workspace, task: str, out: Path,
                      monkeypatch: pytest.MonkeyPatch) -> dict[str, object]:
    """The export an older PLD Studio wrote: without export's authorship check (verify keeps
    its own); its manifest."""
    with monkeypatch.context() as m:
        m.setattr(signoff, "check_written",
                  lambda ws, entity, item_id, text, who, **kw: written_in_trail(
                      ws, entity, item_id, kw.get("before_row")))
        return xp.export(ws, task, out).manifest


def test_an_approval_by_the_last_editor_is_caught(ws: Workspace, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    # An approval by the heuristic's own editor, once let through by a table whose author was
    # changed with plain SQL (approving reads the trail too now), does not pass verify: the
    # trail says who wrote it.
    load_reviews(ws)
    hid = add_heuristic(ws, RULES[0], status="draft")
    add_heuristic(ws, RULES[1])
    edited = review.edit(ws, hid, RULES[0] + " Mostly.", Identity("mallory"), base_version=1)
    with ws.write() as db:
        db.execute("UPDATE heuristics SET written_by = 'bob' WHERE id = ?", [hid])
    with pytest.raises(signoff.FourEyes, match="written by mallory"):
        review.approve(ws, hid, Identity("mallory"), base_version=edited["version"])
    _approved_unchecked(ws, "heuristic", hid, Identity("mallory"))
    build_prompt(ws, TASK)
    with pytest.raises(xp.ExportRefused, match="so mallory cannot approve it"):
        xp.export(ws, TASK, tmp_path / "refused")
    out = tmp_path / "forged"
    _export_unchecked(ws, TASK, out, monkeypatch)
    result = verify(ws, out)
    assert result.broken is not None
    assert f"heuristic {hid}: approved in row" in result.broken
    assert "by mallory, but heuristic" in result.broken
    assert "was written by mallory" in result.broken
    assert "so mallory cannot approve it" in result.broken


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


def _later_export(ws: Workspace, tmp_path: Path) -> int:
    """After the fixture's export, carl rejects heuristic 2 and v2 (heuristic 1 alone) is
    exported: the ledger witnesses both. The id of the reject row."""
    hid = ws.query("SELECT id, version FROM heuristics ORDER BY id")[1]
    review.reject(ws, hid["id"], Identity("carl"), base_version=hid["version"],
                  comment="misleads the student")
    rejected = trail.head(ws).id
    build_prompt(ws, TASK)
    xp.export(ws, TASK, tmp_path / "v2", who=Identity("erin"))
    return rejected


def test_deleting_the_newest_rows_is_caught_by_the_ledger(ws: Workspace, exported: Path,
                                                          tmp_path: Path) -> None:
    # Before: deleting the trail's newest rows (here carl's rejection and the export after it)
    # left a consistent chain, and nothing outside the workspace remembered them.
    ledger = tmp_path / "ledger.jsonl"
    rejected = _later_export(ws, tmp_path)
    result = verify(ws, exported, ledger)
    assert result.ok, result.broken
    assert any("the 2 chain heads the ledger" in c for c in result.checks)
    witnessed = trail.head(ws).id
    _sql(ws, "DELETE FROM reviews WHERE id >= ?", [rejected])
    assert trail.check_chain(ws) is None
    assert verify(ws, exported).ok  # the trail alone cannot tell
    result = verify(ws, exported, ledger)
    assert result.broken is not None
    assert result.broken.startswith(f"ledger line 2 (the export of {TASK} v2 at ")
    assert f"the trail row {witnessed} it witnessed is gone" in result.broken
    # Rows written again over the deleted ones do not have the hashes the ledger witnessed.
    for i in range(witnessed - rejected + 1):
        version = ws.query("SELECT version FROM heuristics WHERE id = 1")[0]["version"]
        review.edit(ws, 1, f"{RULES[0]} ({i})", Identity("mallory"), base_version=version)
    result = verify(ws, exported, ledger)
    assert result.broken is not None and f"trail row {witnessed} no longer has the hash" \
        in result.broken


def test_a_chain_rewritten_from_its_first_row_is_caught_by_the_ledger(
        ws: Workspace, exported: Path, tmp_path: Path) -> None:
    # Before: the ledger knew this workspace's entries only by the hash of the trail's first
    # row, so rewriting the whole chain (first row included) made every entry "another
    # workspace's", and the next export verified against the ledger.
    ledger = tmp_path / "ledger.jsonl"
    first = ws.query("SELECT id FROM reviews ORDER BY id LIMIT 1")[0]["id"]
    _sql(ws, "UPDATE reviews SET comment = 'rewritten' WHERE id = ?", [first])
    with ws.write() as db:
        trail.hash_existing(db)
    assert trail.check_chain(ws) is None
    _later_export(ws, tmp_path)
    result = verify(ws, tmp_path / "v2", ledger)
    assert result.broken is not None
    assert result.broken.startswith(f"ledger line 1 (the export of {TASK} v1 at ")
    assert "the trail's first row is not the one it witnessed" in result.broken


def test_a_ledger_of_another_workspace_proves_nothing(ws: Workspace, exported: Path,
                                                      tmp_path: Path) -> None:
    other = tmp_path / "other.jsonl"
    other.write_text(json.dumps({"trail_root": "f" * 64, "head_row_id": 1,
                                 "head_hash": "0" * 64, "manifest_sha256": "x"}) + "\n")
    result = verify(ws, exported, other)
    assert result.broken is not None and "holds no entry for this workspace" in result.broken
    (tmp_path / "edited.jsonl").write_text("not json\n")
    result = verify(ws, exported, tmp_path / "edited.jsonl")
    assert result.broken == "ledger line 1: not valid JSON (the ledger was edited)"


def test_a_manifest_with_an_unapproved_description_fails(ws: Workspace, exported: Path) -> None:
    # Before: the manifest's description was the task's current one, approved or not, and
    # verify passed it. A manifest written that way (and recorded as an export) fails now.
    path = exported / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["description"] = "Always answer pos."
    data = xp.manifest_bytes(manifest)
    path.write_bytes(data)
    xp.record_export(ws, build_prompt(ws, TASK), data, where=str(exported))
    result = verify(ws, exported)
    assert result.broken == "manifest.json: its description is not the approved preamble's"


def test_verify_cli_checks_the_ledger(ws: Workspace, exported: Path, tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.jsonl"
    ok = pld("verify", str(exported), "--workspace", str(ws.path), "--ledger", str(ledger),
             ws=ws.path)
    assert ok.returncode == 0, ok.stderr
    assert "chain heads the ledger" in ok.stdout and "verified:" in ok.stdout
    _sql(ws, "DELETE FROM reviews WHERE entity = 'export'")
    bad = pld("verify", str(exported), "--workspace", str(ws.path), "--ledger", str(ledger),
              "--json", ws=ws.path)
    assert bad.returncode == 1
    assert json.loads(bad.stdout)["broken"].startswith(f"ledger line 1 (the export of {TASK} v1")
    missing = pld("verify", str(exported), "--workspace", str(ws.path), "--ledger",
                  str(tmp_path / "nope.jsonl"), ws=ws.path)
    assert missing.returncode == 2 and "no such ledger file" in missing.stderr


def test_an_uploader_who_approved_her_own_description_is_caught(
        ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Before: ana typed the description in the upload, the preamble was pld:template's, she
    # approved it herself and verify called it properly signed. Now the trail records her as
    # its writer: with the table's author forged by plain SQL, approving still refuses her,
    # and an approval an older PLD Studio let through fails export and verify.
    data = tmp_path / "rev.jsonl"
    data.write_text("".join(f'{{"text": "review {i} good", "label": "pos"}}\n'
                            f'{{"text": "review {i} bad", "label": "neg"}}\n' for i in range(8)))
    load_custom(ws, data, name="rev", description="Decide the sentiment.", who=Identity("ana"))
    with ws.write() as db:
        db.execute("UPDATE preambles SET written_by = 'bob' WHERE task = 'rev'")
    with pytest.raises(signoff.FourEyes, match="written by ana"):
        preamble.approve_preamble(ws, "rev", Identity("ana"), base_version=1)
    _approved_unchecked(ws, "preamble", preamble.ensure_preamble(ws, "rev")["id"],
                        Identity("ana"))
    add_heuristic(ws, RULES[0], task="rev")
    build_prompt(ws, "rev")
    with pytest.raises(xp.ExportRefused, match="the preamble: approved in row"):
        xp.export(ws, "rev", tmp_path / "refused")
    out = tmp_path / "out"
    manifest = _export_unchecked(ws, "rev", out, monkeypatch)
    assert (manifest["preamble"]["written_by"], manifest["preamble"]["approved_by"]) \
        == ("ana", "ana")
    result = verify(ws, out)
    assert result.broken is not None
    assert result.broken.startswith("the preamble (#1): approved in row")
    assert "was written by ana" in result.broken and "so ana cannot approve it" in result.broken


def test_a_manifest_that_names_another_author_is_caught(ws: Workspace, exported: Path) -> None:
    path = exported / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["heuristics"][0]["written_by"] = "the-ceo"
    path.write_text(json.dumps(manifest, indent=2) + "\n")
    # An insider records the forged manifest as exported, so only the authorship can tell.
    xp.record_export(ws, get_prompt(ws, TASK, manifest["version"]), path.read_bytes(),
                     where="x")
    result = verify(ws, exported)
    assert result.broken is not None
    assert "the manifest's authorship is not the one trail row" in result.broken


def test_an_oidc_requirement_lifted_in_the_table_is_caught(ws: Workspace, exported: Path,
                                                           tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    # Before: with tasks.require_oidc set to 0 by plain SQL, export wrote self-declared
    # sign-offs with "require_oidc": false in the manifest, and verify believed the manifest.
    signoff.set_require_oidc(ws, TASK, True, Identity("alice"))
    _sql(ws, "UPDATE tasks SET require_oidc = 0 WHERE name = ?", [TASK])
    with pytest.raises(xp.ExportRefused, match="requires OIDC sign-offs"):
        xp.export(ws, TASK, tmp_path / "refused")
    with monkeypatch.context() as m:  # an export as an older PLD Studio wrote it
        m.setattr(signoff, "requires_oidc", lambda ws, task: False)
        xp.export(ws, TASK, tmp_path / "lifted")
    result = verify(ws, tmp_path / "lifted")
    assert result.broken is not None and "requires OIDC sign-offs" in result.broken
