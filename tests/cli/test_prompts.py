"""``python -m pld prompts build|list|show``: the Export page's "Build prompt version" and its
versions table, headless (real subprocesses on a real workspace, as in
tests/cli/test_contract.py)."""

from __future__ import annotations

import json
from pathlib import Path

from pld.pipeline.student import list_prompts
from pld.workspace import Workspace
from tests.cli.test_contract import pld
from tests.pipeline.test_student import RULES, TASK, add_heuristic, load_reviews


def _ok(*args: str, ws: Workspace) -> str:
    r = pld(*args, ws=ws.path)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_prompts_build_list_show_from_approved_heuristics(
    ws: Workspace, tmp_path: Path
) -> None:
    load_reviews(ws)
    drafts = [add_heuristic(ws, text, status="draft") for text in RULES]

    r = pld("prompts", "build", TASK, ws=ws.path)
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert "no approved heuristics" in r.stderr
    assert "no prompt versions" in _ok("prompts", "list", TASK, ws=ws)
    r = pld("prompts", "show", TASK, ws=ws.path)
    assert r.returncode == 2 and "no prompt versions" in r.stderr
    assert list_prompts(ws, TASK) == []

    versions = [a for _ in drafts for a in ("--base-version", "1")]
    _ok("review", "approve", *map(str, drafts), *versions, "--as", "alice", ws=ws)
    first = json.loads(_ok("prompts", "build", TASK, "--json", ws=ws))
    assert (first["version"], first["new"], first["heuristic_ids"]) == (1, True, drafts)
    again = json.loads(_ok("prompts", "build", TASK, "--json", ws=ws))
    assert (again["version"], again["new"], again["sha256"]) == (1, False, first["sha256"])
    assert "already there" in _ok("prompts", "build", TASK, ws=ws)
    [stored] = list_prompts(ws, TASK)
    assert stored.sha256 == first["sha256"] and stored.heuristic_ids == drafts

    # show prints the stored text byte for byte: the prompt.md that export writes.
    shown = pld("prompts", "show", TASK, ws=ws.path)
    assert shown.returncode == 0 and shown.stdout.rstrip("\n") == stored.text.rstrip("\n")
    assert all(rule in shown.stdout for rule in RULES)
    # The preamble (the prompt's fixed text) is approved like a heuristic before export.
    r = pld("export", TASK, "--out", str(tmp_path / "out"), ws=ws.path)
    assert r.returncode == 2 and "the preamble: status is draft" in r.stderr
    shown_pre = json.loads(_ok("review", "preamble", "show", TASK, "--json", ws=ws))
    assert "{rules}" in shown_pre["text"] and shown_pre["created_by"] == "pld:template"
    _ok("review", "preamble", "approve", TASK, "--base-version", str(shown_pre["version"]),
        "--as", "carol", ws=ws)
    _ok("export", TASK, "--out", str(tmp_path / "out"), "--as", "dave", ws=ws)
    exported = (tmp_path / "out" / "prompt.md").read_text(encoding="utf-8")
    assert exported == stored.text
    assert "verified:" in _ok("verify", str(tmp_path / "out"), ws=ws)
    assert json.loads(_ok("prompts", "show", TASK, "--json", ws=ws))["text"] == exported

    # An edit takes the heuristic out of the approved set: v1 is refused, a rebuild is v2.
    _ok("review", "edit", str(drafts[1]), "--text", "If the review says awful, then the label "
        "is neg.", "--base-version", "2", "--as", "bob", ws=ws)
    listed = json.loads(_ok("prompts", "list", TASK, "--json", ws=ws))["prompts"]
    assert [(p["version"], p["exportable"]) for p in listed] == [(1, False)]
    assert f"heuristic {drafts[1]}: status is draft" in listed[0]["refused"]
    assert "refused: cannot export" in _ok("prompts", "list", TASK, ws=ws)
    second = json.loads(_ok("prompts", "build", TASK, "--json", ws=ws))
    assert (second["version"], second["new"], second["heuristic_ids"]) == (2, True, drafts[:1])
    assert RULES[1] in _ok("prompts", "show", TASK, "--version", "1", ws=ws)
    assert RULES[1] not in _ok("prompts", "show", TASK, ws=ws)
    r = pld("prompts", "show", TASK, "--version", "9", ws=ws.path)
    assert r.returncode == 2 and "no prompt version 9 (versions: 1, 2)" in r.stderr


def test_export_appends_to_the_ledger_it_is_given(ws: Workspace, tmp_path: Path) -> None:
    load_reviews(ws)
    add_heuristic(ws, RULES[0])
    _ok("prompts", "build", TASK, ws=ws)
    out, ledger = tmp_path / "exports" / "v1", tmp_path / "audit" / "ledger.jsonl"
    data = json.loads(_ok("export", TASK, "--out", str(out), "--ledger", str(ledger), "--json",
                          ws=ws))
    assert data["ledger"] == str(ledger)
    [entry] = [json.loads(line) for line in ledger.read_text(encoding="utf-8").splitlines()]
    assert (entry["task"], entry["version"]) == (TASK, 1)
    assert not (tmp_path / "exports" / "ledger.jsonl").exists()
    text = _ok("export", TASK, "--out", str(out), ws=ws)  # the default: next to --out
    assert f"is in {tmp_path / 'exports' / 'ledger.jsonl'}" in text
    assert "verified:" in _ok("verify", str(out), "--ledger", str(ledger), ws=ws)
    (tmp_path / "a-file").write_text("")
    r = pld("export", TASK, "--out", str(tmp_path / "v1b"), "--ledger",
            str(tmp_path / "a-file" / "ledger.jsonl"), ws=ws.path)
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert "cannot append to the ledger" in r.stderr
    assert not (tmp_path / "v1b").exists()  # refused before anything was written
