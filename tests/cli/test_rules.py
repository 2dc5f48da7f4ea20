"""``python -m pld rules list|show|verify`` (the Micro-instructions page's table, rule detail
and evidence) and ``extract``'s contrast and student options, headless (real subprocesses on
a real workspace, as in tests/cli/test_contract.py)."""

from __future__ import annotations

import json

import pytest

from pld.tasks.store import save_task
from pld.workspace import Workspace, dumps, now
from tests.cli.test_contract import pld
from tests.fakes.openai_server import FakeOpenAI
from tests.pipeline.extract import scripted as sc
from tests.test_review import TASK, add_rules


@pytest.fixture
def rules(ws: Workspace) -> list[int]:
    """Four rules of ``claims``: one flagged, one failed, two in cluster 1 (one in noise)."""
    save_task(ws, name=TASK, kind="custom", labels=["true", "false"], description="",
              source="test", params={}, examples=[])
    ids = add_rules(ws, [("If the claim cites a source, it is true.", "true"),
                         ("If the claim has no date, it is false.", "false"),
                         ("Claims quoting a study are true.", "true"),
                         ("unused", "false")])
    with ws.write() as db:
        db.execute("UPDATE micro_instructions SET flags = ? WHERE id = ?",
                   [dumps(["no_label"]), ids[2]])
        db.execute("UPDATE micro_instructions SET status = 'failed', rule = NULL, "
                   "error = 'reply was not JSON' WHERE id = ?", [ids[3]])
        cg = db["clusterings"].insert({"task": TASK, "method": "kmeans", "embed_model": "m",
                                       "params": "{}", "metrics": "{}", "status": "proposed",
                                       "created_at": now()}).last_pk
        c = db["clusters"].insert({"clustering_id": cg, "label": 0, "name": "sources",
                                   "keywords": "[]", "size": 2}).last_pk
        db["cluster_members"].insert_all([
            {"clustering_id": cg, "rule_id": ids[0], "cluster_id": c, "x": 0.0, "y": 0.0},
            {"clustering_id": cg, "rule_id": ids[2], "cluster_id": c, "x": 0.0, "y": 0.0},
            {"clustering_id": cg, "rule_id": ids[1], "cluster_id": None, "x": 0.0, "y": 0.0}])
    return ids


def _ids(ws: Workspace, *args: str) -> tuple[int, list[int]]:
    r = pld("rules", "list", TASK, *args, "--json", ws=ws.path)
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    return data["total"], [x["id"] for x in data["rules"]]


def test_rules_list_filters_and_pages_like_the_page(ws: Workspace, rules: list[int]) -> None:
    a, b, c, failed = rules
    assert _ids(ws) == (4, rules)
    assert _ids(ws, "--status", "failed") == (1, [failed])
    assert _ids(ws, "--label", "true") == (2, [a, c])
    assert _ids(ws, "--flag", "any") == (1, [c])
    assert _ids(ws, "--flag", "no_label") == (1, [c])
    assert _ids(ws, "--flag", "none", "--status", "ok") == (2, [a, b])
    assert _ids(ws, "--search", "DATE") == (1, [b])
    assert _ids(ws, "--search", "not json") == (1, [failed])
    [cl] = ws.query("SELECT id, clustering_id FROM clusters")
    clustering, cluster = str(cl["clustering_id"]), str(cl["id"])
    assert _ids(ws, "--clustering", clustering, "--cluster", cluster) == (2, [a, c])
    assert _ids(ws, "--clustering", clustering, "--cluster", "noise") == (1, [b])
    assert _ids(ws, "--limit", "2", "--offset", "1") == (4, [b, c])

    text = pld("rules", "list", TASK, "--limit", "2", ws=ws.path).stdout
    assert text.startswith("rules 1-2 of 4 matching") and "cites a source" in text
    assert "(failed) reply was not JSON" in pld("rules", "list", TASK, "--status", "failed",
                                                ws=ws.path).stdout

    for args, says in ((["--flag", "sus"], "--flag 'sus'"),
                       (["--cluster", "1"], "go together"),
                       (["--clustering", "1", "--cluster", "x"], "--cluster: expected")):
        r = pld("rules", "list", TASK, *args, ws=ws.path)
        assert r.returncode == 2 and r.stderr.count("\n") == 1 and says in r.stderr, r.stderr
    r = pld("rules", "list", "no-such-task", ws=ws.path)
    assert r.returncode == 2 and "no-such-task" in r.stderr


def test_rules_show_gives_the_rule_with_its_example(ws: Workspace, rules: list[int]) -> None:
    r = pld("rules", "show", str(rules[2]), ws=ws.path)
    assert r.returncode == 0, r.stderr
    assert "rule: Claims quoting a study are true." in r.stdout
    assert "gold true" in r.stdout and "flag no_label: the rule names none" in r.stdout
    data = json.loads(pld("rules", "show", str(rules[3]), "--json", ws=ws.path).stdout)
    assert (data["status"], data["error"], data["example"]["label"]) == (
        "failed", "reply was not JSON", "false")
    r = pld("rules", "show", "999", ws=ws.path)
    assert r.returncode == 2 and "rule 999 not found" in r.stderr


def test_extract_from_where_the_student_fails_then_verify(
        ws: Workspace, fake_openai: FakeOpenAI) -> None:
    """``extract --student`` (and ``--no-contrastive``) and ``rules verify``, then the evidence in
    ``rules list`` and ``rules show``: subprocesses against the scripted fake models."""
    sc.make_task(ws)
    model = sc.script(fake_openai)
    r = pld("extract", sc.TASK, "--teacher", model, "--student", model, ws=ws.path)
    assert r.returncode == 0, r.stderr
    assert "extract run" in r.stdout and "2/10 rules (2 from a contrasting pair)" in r.stdout
    assert "8 of 10 examples left out: the zero-shot student" in r.stdout
    rows = ws.query("SELECT id, rule, source_examples FROM micro_instructions ORDER BY id")
    money = next(x["id"] for x in rows if x["rule"] == sc.MONEY_BACK)
    assert len(json.loads(rows[0]["source_examples"])["contrast"]) == 1
    r = pld("extract", sc.TASK, "--teacher", model, "--no-contrastive", "--estimate-only",
            "--json", ws=ws.path)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["calls"] == 8  # the examples left out, each alone

    r = pld("rules", "verify", sc.TASK, "--student", model, "--neighbours", "2", ws=ws.path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("verify run ") and "2 rules verified now, 0 before" in r.stdout
    r = pld("rules", "verify", sc.TASK, "--student", model, "--json", ws=ws.path)
    data = json.loads(r.stdout)
    assert (data["verified"], data["skipped"], data["helping"]) == (0, 2, 2)
    listed = json.loads(pld("rules", "list", sc.TASK, "--json", ws=ws.path).stdout)
    effect = {x["id"]: x["effect"] for x in listed["rules"]}
    assert effect[money] > 0.1 and len(effect) == 2
    text = pld("rules", "show", str(money), ws=ws.path).stdout
    assert f"evidence ({model}): effect +" in text and "on 4 items (1 helped, 0 hurt)" in text
    assert "contrast tr6 (train, gold other): Who won the company football match" in text
    r = pld("rules", "verify", sc.TASK, "--student", "nonsense/x", ws=ws.path)
    assert r.returncode == 2
