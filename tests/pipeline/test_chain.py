"""``python -m pld run``: the whole method on the demo task, against a scripted provider.

The fake OpenAI-compatible server plays teacher and student (it tells them apart by the reply
format asked for), so the test checks the plumbing end to end through the real CLI: every stage
runs, the export is written, a second run makes no uncached call, and evaluating the exported
prompt reproduces the stored score. The real local model runs the same chain in
``tests/test_run_local.py``.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

from pld.workspace import open_workspace
from tests.cli.test_contract import pld
from tests.fakes.openai_server import FakeOpenAI

LABELS = ["escalate-fraud", "data-privacy-request", "complaint", "routine"]
KEYWORDS = {"escalate-fraud": "fraud", "data-privacy-request": "data",
            "complaint": "unhappy", "routine": "ordinary"}


def _schema_keys(body: dict[str, Any]) -> set[str]:
    fmt = body.get("response_format") or {}
    schema = (fmt.get("json_schema") or {}).get("schema") or {}
    for tool in body.get("tools") or []:  # Anthropic: the schema of the forced tool
        schema = tool.get("input_schema") or schema
    return set(schema.get("properties") or {})


def _user(body: dict[str, Any]) -> str:
    return [m["content"] for m in body["messages"] if m["role"] == "user"][-1]


def scripted(body: dict[str, Any]) -> str:
    keys = _schema_keys(body)
    if {"reasoning", "rule"} <= keys:
        gold = re.search(r"Gold label: (\S+)", _user(body)).group(1)  # type: ignore[union-attr]
        return json.dumps({"reasoning": "The text shows the deciding feature.",
                           "rule": f"If the text is about {KEYWORDS[gold]} matters, then the "
                                   f"label is {gold}."})
    if "heuristic" in keys:
        found = [lab for lab in LABELS if lab in _user(body)]
        text = " ".join(f"If the text is about {KEYWORDS[lab]} matters, the label is {lab}."
                        for lab in found)
        return json.dumps({"heuristic": text, "labels_covered": found})
    if "proposals" in keys:
        return json.dumps({"proposals": []})
    # The student: a stable pseudo-random label, so scores are neither 0 nor 1.
    digest = hashlib.sha256(_user(body).encode()).digest()[0]
    return LABELS[digest % len(LABELS)]


def _uncached(ws: Path) -> int:
    calls = json.loads(pld("calls", "--json", ws=ws).stdout)
    return int(calls["total"]["uncached"])


def test_run_exports_and_a_second_run_makes_no_uncached_call(
    ws_path: Path, tmp_path: Path
) -> None:
    out = tmp_path / "exported"
    with FakeOpenAI(responder=scripted) as fake:
        model = fake.model_string()
        args = ["run", "demo", "--teacher", model, "--student", model,
                "--auto-approve-as", "ci", "--method", "kmeans", "--k", "4",
                "--iterations", "1", "--out", str(out), "--json"]
        first = pld(*args, ws=ws_path)
        assert first.returncode == 0, first.stderr
        summary = json.loads(first.stdout)
        stages = summary["stages"]
        assert stages["extract"]["done"] == 50 and stages["extract"]["failed"] == 0
        assert stages["cluster"]["n_clusters"] == 4
        assert stages["approve"]["approved"] >= 1
        assert {"zero-shot", "pld"} <= set(stages["eval"])
        assert (out / "prompt.md").exists() and (out / "manifest.json").exists()
        with open_workspace(ws_path) as ws:
            accepted = ws.query("SELECT who, identity_kind FROM reviews "
                                "WHERE entity = 'clustering' AND action = 'accept'")
        assert accepted == [{"who": "ci", "identity_kind": "auto"}]
        calls_after_first = _uncached(ws_path)
        requests_after_first = len(fake.requests)

        second = pld(*args, ws=ws_path)
        assert second.returncode == 0, second.stderr
        assert _uncached(ws_path) == calls_after_first
        assert len(fake.requests) == requests_after_first

        manifest = json.loads((out / "manifest.json").read_text())
        stored = {e["method"]: e for e in manifest["evaluations"]}
        assert "pld" in stored
        again = pld("eval", "demo", "--student", model, "--prompt", str(out / "prompt.md"),
                    "--json", ws=ws_path)
        assert again.returncode == 0, again.stderr
        assert json.loads(again.stdout)["metrics"]["macro_f1"] == stored["pld"]["macro_f1"]
        assert len(fake.requests) == requests_after_first


def test_run_without_auto_approval_stops_for_review(ws_path: Path) -> None:
    with FakeOpenAI(responder=scripted) as fake:
        model = fake.model_string()
        r = pld("run", "demo", "--teacher", model, "--student", model, "--method", "kmeans",
                "--k", "3", "--limit", "12", "--json", ws=ws_path)
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["stopped"] == "awaiting-review"
    assert "approve" not in summary["stages"] and "eval" not in summary["stages"]
    listed = json.loads(pld("review", "list", "demo", "--json", ws=ws_path).stdout)
    assert listed["heuristics"] and all(h["status"] == "draft" for h in listed["heuristics"])


def test_run_with_default_clustering_options(ws_path: Path) -> None:
    # `run` without clustering options: auto, as a new user would run it. The scripted rules
    # are four groups of one sentence each, so auto must find the four and no more.
    with FakeOpenAI(responder=scripted) as fake:
        model = fake.model_string()
        r = pld("run", "demo", "--teacher", model, "--student", model, "--auto-approve-as", "ci",
                "--iterations", "0", "--out", str(ws_path.parent / "export"), "--json",
                ws=ws_path)
    assert r.returncode == 0, r.stderr
    cluster = json.loads(r.stdout)["stages"]["cluster"]
    assert cluster["fallback"] is None and cluster["method"] == "auto"
    assert cluster["n_clusters"] == 4 and cluster["noise_share"] == 0
    assert cluster["largest_share"] <= 0.6 and cluster["chosen"] and cluster["why"]
    with open_workspace(ws_path) as ws:
        (row,) = ws.query("SELECT method, params FROM clusterings")
    params = json.loads(row["params"])
    assert row["method"] == "auto" and params["auto"]["chosen"] == cluster["chosen"]
    # The scripted student gives no label scores: failing-first and verification are left out.
    assert "no failing-first" in json.loads(r.stdout)["stages"]["student_scores"]


def test_run_falls_back_to_kmeans_when_dbscan_finds_no_cluster(ws_path: Path) -> None:
    def distinct_rules(body: dict[str, Any]) -> str:
        if {"reasoning", "rule"} <= _schema_keys(body):
            # Every rule quotes its own example, so no two are close at a tiny ε.
            example = _user(body).split("## Example")[-1].split("Gold label")[0].strip()
            gold = re.search(r"Gold label: (\S+)", _user(body)).group(1)  # type: ignore[union-attr]
            return json.dumps({"reasoning": "r", "rule": f"If the text reads like "
                                                         f"'{example[:60]}', then the label is "
                                                         f"{gold}."})
        return scripted(body)

    with FakeOpenAI(responder=distinct_rules) as fake:
        model = fake.model_string()
        r = pld("run", "demo", "--teacher", model, "--student", model, "--auto-approve-as", "ci",
                "--limit", "20", "--method", "dbscan", "--eps", "0.0001", "--iterations", "0",
                "--no-contrastive",
                "--out", str(ws_path.parent / "export"), "--json", ws=ws_path)
    assert r.returncode == 0, r.stderr
    cluster = json.loads(r.stdout)["stages"]["cluster"]
    assert cluster["fallback"] == "dbscan found no clusters; fell back to kmeans k=3"
    assert cluster["n_clusters"] == 3
    with open_workspace(ws_path) as ws:
        methods = [r["method"] for r in ws.query("SELECT method FROM clusterings ORDER BY id")]
    # The empty DBSCAN clustering stays visible beside the k-means one the run went on with.
    assert methods == ["dbscan", "kmeans"]


def test_run_cover_labels_gives_a_label_lost_in_noise_its_own_heuristic(ws_path: Path) -> None:
    def routine_is_scattered(body: dict[str, Any]) -> str:
        if {"reasoning", "rule"} <= _schema_keys(body) and "Gold label: routine" in _user(body):
            # Each routine rule quotes its own example: too far apart for any dense region.
            example = _user(body).split("## Example")[-1].split("Gold label")[0].strip()
            return json.dumps({"reasoning": "r", "rule": f"If the text reads like "
                                                         f"'{example[:60]}', then the label is "
                                                         "routine."})
        return scripted(body)

    args = ["run", "demo", "--auto-approve-as", "ci", "--limit", "24", "--method", "dbscan",
            "--eps", "0.05", "--min-samples", "3", "--iterations", "0", "--test-limit", "4",
            "--cover-labels", "--no-contrastive",
            "--out", str(ws_path.parent / "export"), "--json"]
    with FakeOpenAI(responder=routine_is_scattered) as fake:
        model = fake.model_string()
        first = pld(*args, "--teacher", model, "--student", model, ws=ws_path)
        again = pld(*args, "--teacher", model, "--student", model, ws=ws_path)
    assert first.returncode == 0, first.stderr
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["stages"]["cluster"]["reused"] is True
    with open_workspace(ws_path) as ws:
        (row,) = ws.query("SELECT id, params FROM clusterings")
        assert json.loads(row["params"])["label_clusters"] == ["routine"]
        covered = ws.query(
            "SELECT h.text, c.size FROM heuristics h JOIN clusters c ON c.id = h.cluster_id "
            "WHERE c.clustering_id = ? AND c.name LIKE 'routine: kept from noise%'", [row["id"]])
    assert len(covered) == 1 and covered[0]["size"] >= 3
    assert "routine" in covered[0]["text"]


def test_run_whose_loop_removes_every_heuristic_says_so_and_exits_0(
    ws_path: Path, tmp_path: Path
) -> None:
    # Before: the conflict loop removed every heuristic, and `run` then tried to export the
    # zero-shot baseline and ended in an error instead of saying that no heuristic helped.
    assert pld("load", "demo", ws=ws_path).returncode == 0
    with open_workspace(ws_path) as ws:
        gold = {r["text"]: r["label"] for r in ws.query(
            "SELECT text, label FROM examples WHERE task = 'demo'")}

    def every_rule_misleads(body: dict[str, Any]) -> str:
        keys = _schema_keys(body)
        if "heuristic" in keys:  # one heuristic per cluster, for the label of its rules
            [lab] = {x for x in LABELS if f"then the label is {x}." in _user(body)}
            return json.dumps({"heuristic": f"If the text is about {KEYWORDS[lab]} matters, "
                                            f"the label is {lab}.", "labels_covered": [lab]})
        if {"reasoning", "rule"} <= keys or "proposals" in keys:
            return scripted(body)
        # The student: right on its own, wrong on an item whose label's rule it is shown.
        system = next(m["content"] for m in body["messages"] if m["role"] == "system")
        label = gold.get(_user(body), LABELS[0])
        if f"the label is {label}" in system:
            return LABELS[(LABELS.index(label) + 1) % len(LABELS)]
        return label

    out = tmp_path / "exported"
    args = ["run", "demo", "--auto-approve-as", "ci", "--method", "kmeans", "--k", "4",
            "--iterations", "1", "--test-limit", "6", "--out", str(out)]
    with FakeOpenAI(responder=every_rule_misleads) as fake:
        model = fake.model_string()
        first = pld(*args, "--teacher", model, "--student", model, "--json", ws=ws_path)
        again = pld(*args, "--teacher", model, "--student", model, ws=ws_path)
    assert first.returncode == 0, first.stderr
    summary = json.loads(first.stdout)
    assert summary["stages"]["prompt"]["heuristics"] == 4
    assert summary["stages"]["resolve"]["stop_reason"] == "no-errors"
    assert summary["no_heuristic_helped"] is True
    statement = summary["statement"]
    assert statement.startswith("No heuristic helped on validation: the best prompt is the "
                                "zero-shot baseline (macro-F1 1.000 on 20 validation items")
    assert "nothing to export" in statement
    assert "export" not in summary["stages"] and not out.exists()
    assert {"zero-shot", "pld"} <= set(summary["stages"]["eval"])
    assert again.returncode == 0, again.stderr
    assert statement in again.stdout and "error" not in again.stderr.lower()


def _student_with_scores(ws_path: Path) -> tuple[Any, Any]:
    """A responder and first-token log-probabilities for a student that gives label scores:
    it leans to an item's gold label when its prompt holds a rule for that label, and
    otherwise to a stable pseudo-random one."""
    assert pld("load", "demo", ws=ws_path).returncode == 0
    with open_workspace(ws_path) as ws:
        gold = {r["text"]: r["label"] for r in ws.query(
            "SELECT text, label FROM examples WHERE task = 'demo'")}

    def leaning(body: dict[str, Any]) -> str:
        system = next((m["content"] for m in body["messages"] if m["role"] == "system"), "")
        label = gold.get(_user(body))
        if label is not None and f"the label is {label}" in system:
            return label
        return LABELS[hashlib.sha256(_user(body).encode()).digest()[0] % len(LABELS)]

    def responder(body: dict[str, Any]) -> str:
        keys = _schema_keys(body)
        if {"reasoning", "rule"} <= keys or "heuristic" in keys or "proposals" in keys:
            return scripted(body)
        return leaning(body)

    def scores(body: dict[str, Any]) -> list[tuple[str, float]]:
        top = leaning(body)
        return [(top, -0.3), *((lab, -2.0) for lab in LABELS if lab != top)]

    return responder, scores


def test_run_uses_contrast_failing_first_and_verified_rules_by_default(ws_path: Path) -> None:
    responder, scores = _student_with_scores(ws_path)
    base = ["run", "demo", "--auto-approve-as", "ci", "--limit", "16", "--iterations", "0",
            "--val-limit", "8", "--test-limit", "4", "--nearest-few-shot", "2", "--json"]
    with FakeOpenAI(responder=responder) as fake:
        fake.first_token_logprobs = scores
        model = fake.model_string()
        r = pld(*base, "--teacher", model, "--student", model,
                "--out", str(ws_path.parent / "export"), ws=ws_path)
    assert r.returncode == 0, r.stderr
    stages = json.loads(r.stdout)["stages"]
    assert "student_scores" not in stages
    ex = stages["extract"]
    assert ex["contrastive"] is True and ex["contrasted"] > 0
    assert "already answers them right" in ex["screen_note"]
    assert ex["total"] == 16 and ex["done"] + ex["student_right"] <= 16
    assert stages["verify"]["with_evidence"] == ex["done"]
    assert stages["cluster"]["method"] == "auto" and stages["cluster"]["largest_share"] <= 0.6
    assert {"zero-shot", "few-shot-nearest", "pld"} <= set(stages["eval"])
    with open_workspace(ws_path) as ws:
        kinds = {r["kind"] for r in ws.query("SELECT kind FROM runs")}
    assert {"extract", "verify", "cluster", "consolidate"} <= kinds


def test_each_new_part_switches_off(ws_path: Path) -> None:
    responder, scores = _student_with_scores(ws_path)
    with FakeOpenAI(responder=responder) as fake:
        fake.first_token_logprobs = scores
        model = fake.model_string()
        r = pld("run", "demo", "--teacher", model, "--student", model, "--limit", "12",
                "--no-contrastive", "--no-failing-first", "--no-verify-rules",
                "--method", "dbscan", "--json", ws=ws_path)
    assert r.returncode == 0, r.stderr
    stages = json.loads(r.stdout)["stages"]
    assert stages["extract"]["contrastive"] is False and stages["extract"]["contrasted"] == 0
    assert stages["extract"]["student_right"] == 0 and stages["extract"]["done"] == 12
    assert "verify" not in stages and "student_scores" not in stages
    assert stages["cluster"]["method"] == "dbscan" and stages["cluster"]["chosen"] is None
    with open_workspace(ws_path) as ws:
        (params,) = [json.loads(r["params"]) for r in ws.query("SELECT params FROM clusterings")]
    # run --method is a choice made on the command line: kept, and marked as explicit.
    assert params["choice"] == "explicit"


def test_run_whose_rules_only_restate_the_labels_makes_no_heuristic_and_exits_0(
        ws_path: Path, tmp_path: Path) -> None:
    def restating(body: dict[str, Any]) -> str:
        if {"reasoning", "rule"} <= _schema_keys(body):
            gold = re.search(r"Gold label: (\S+)", _user(body)).group(1)  # type: ignore[union-attr]
            return json.dumps({"reasoning": "r", "rule": f"If the text is about "
                                                         f"{gold.replace('-', ' ')}, then the "
                                                         f"label is {gold}."})
        return scripted(body)

    def deaf(body: dict[str, Any]) -> list[tuple[str, float]]:
        # Label scores that no rule in the prompt moves: every rule's effect is zero.
        top = LABELS[hashlib.sha256(_user(body).encode()).digest()[0] % len(LABELS)]
        return [(top, -0.3), *((lab, -2.0) for lab in LABELS if lab != top)]

    out = tmp_path / "exported"
    with FakeOpenAI(responder=restating) as fake:
        fake.first_token_logprobs = deaf
        model = fake.model_string()
        r = pld("run", "demo", "--teacher", model, "--student", model, "--auto-approve-as", "ci",
                "--limit", "12", "--iterations", "1", "--val-limit", "8", "--test-limit", "4",
                "--out", str(out), "--json", ws=ws_path)
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    stages = summary["stages"]
    assert stages["verify"]["restatements"] == stages["extract"]["done"] > 0
    aside = stages["consolidate"]["set_aside"]
    assert aside and stages["consolidate"]["created"] == 0
    assert set(aside.values()) == {"every rule restates the task description or a label's name"}
    assert summary["no_heuristic_helped"] is True
    assert summary["statement"].startswith("No heuristic was made: consolidation set every "
                                           "cluster of clustering")
    assert "prompt" not in stages and "export" not in stages and not out.exists()
    assert set(stages["eval"]) == {"zero-shot"}
