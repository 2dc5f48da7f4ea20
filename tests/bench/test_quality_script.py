"""bench/quality.py end to end with remote models: an Anthropic teacher and an OpenAI-compatible
student, both fake servers on 127.0.0.1, on four StereoSet items per split.

The local model's benchmark takes an hour per task, so CI checks the script's plumbing here:
that ``--teacher anthropic/...`` works unchanged, that the JSON holds every block the README
tables read (the nearest-neighbour baseline and PLD's paired differences from the baselines
included), that a rerun resumes from the workspace without one uncached call, that ``--quick``
and ``--seeds`` run and that each new part of the method switches off as a variant.
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from bench import quality
from bench.figures.quality.report import markdown_table
from bench.figures.quality.variants import flags_text, variant_name
from bench.figures.scripted import last_user, schema_keys
from pld.tasks.stereoset import DOMAINS
from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.openai_server import FakeOpenAI


def reply(body: dict[str, Any]) -> str:
    """A teacher that writes one rule per domain and a student that guesses stably.

    The rules' condition says something the task description does not (a rule that only
    restated it would be set aside, leaving no heuristic to measure)."""
    keys, user = schema_keys(body), last_user(body)
    if {"reasoning", "rule"} <= keys:
        gold = re.search(r"Gold label: (\S+)", user).group(1)  # type: ignore[union-attr]
        return json.dumps({"reasoning": "The candidates are about this domain.",
                           "rule": "If the second sentence names a cooking utensil or a "
                                   f"kitchen chore, then the label is {gold}."})
    if "heuristic" in keys:
        found = [d for d in DOMAINS if d in user]
        return json.dumps({"heuristic": " ".join(
            f"If the candidates talk about {d} roles, the label is {d}." for d in found),
            "labels_covered": found})
    if "proposals" in keys:
        return json.dumps({"proposals": []})
    return DOMAINS[hashlib.sha256(user.encode()).digest()[0] % len(DOMAINS)]


def label_scores(body: dict[str, Any]) -> list[tuple[str, float]]:
    """The student's first-token alternatives: its answer on top, the other domains below."""
    top = reply(body)
    return [(top, -0.3), *((d, -2.0) for d in DOMAINS if d != top)]


def _uncached(ws: Path) -> int:
    with sqlite3.connect(ws) as db:
        return db.execute("SELECT count(*) FROM llm_calls WHERE cache_hit = 0").fetchone()[0]


def test_quality_script_with_remote_models_resumes_and_seeds_a_variant(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    with FakeAnthropic(responder=reply) as teacher, FakeOpenAI(responder=reply) as student:
        student.first_token_logprobs = label_scores
        monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
        monkeypatch.setenv("ANTHROPIC_BASE_URL", teacher.base_url)
        out = tmp_path / "quality.json"
        argv = ["--task", "stereoset", "--teacher", "anthropic/claude-test",
                "--student", student.model_string(), "--train", "8", "--val", "4", "--test",
                "4", "--few-shot", "2", "--work", str(tmp_path / "work"), "--out", str(out)]
        assert quality.main(argv) == 0
        first = json.loads(out.read_text())
        (ws,) = (tmp_path / "work").glob("*.db")
        calls_after_first = _uncached(ws)

        assert quality.main(argv) == 0
        second = json.loads(out.read_text())
        assert _uncached(ws) == calls_after_first

        assert quality.main([*argv, "--method", "kmeans", "--k", "3"]) == 0
        variant = json.loads(out.read_text())["variants"]["kmeans-k3"]["stereoset"]

    block = first["tasks"]["stereoset"]
    assert (block["n_train"], block["n_val"], block["n_test"]) == (8, 4, 4)
    assert block["models"] == {"teacher": "anthropic/claude-test",
                               "student": student.model_string()}
    for method in ("zero_shot", "few_shot", "nearest_few_shot", "pld_clustered",
                   "pld_post_conflict"):
        lo, hi = block[method]["ci"]
        assert 0 <= lo <= block[method]["macro_f1"] <= hi <= 1, method
        assert block[method]["n"] == 4 and block[method]["n_unparseable"] == 0, method
        assert block[method]["calibrated"] is not None, method
    # PLD minus each strong baseline on the same test items, calibrated, with a paired CI.
    for key in ("pld_minus_zero_shot", "pld_minus_nearest_few_shot"):
        paired = block["paired"][key]
        assert paired["n"] == 4 and paired["judged_by"] == "calibrated", key
        assert paired["ci"][0] <= paired["delta"] <= paired["ci"][1], key
    assert block["parts"] == {"contrastive": True, "failing_first": True, "verify_rules": True}
    assert block["cluster_method"] == "auto" and block["largest_cluster_share"] <= 0.6
    assert block["verify"]["with_evidence"] >= 1
    # Failing-first: the examples the calibrated zero-shot student answers right get no rule.
    assert block["rules"] + block["extraction"]["student_right"] == 8 and block["clusters"] >= 1
    assert block["extraction"]["contrastive"] is True and block["student_scores"] is None
    assert block["heuristics"] >= 1 and block["prompt_tokens"] > 0
    for role in ("teacher", "student"):
        assert block["tokens"][role]["calls"] > 0 and block["tokens"][role]["input_tokens"] > 0
    assert "auto-approved" in block["approval"]
    # Remote parts have no CPU-time estimate: they depend on the API, not on this machine.
    assert block["estimate_s"]["extract"] is None and block["estimate_s"]["eval"] is None
    assert first["paper"]["stereoset"]["baseline"] == 0.57

    assert second["tasks"]["stereoset"]["pld_post_conflict"] == block["pld_post_conflict"]

    # The variant reuses the base run's calls: extraction and both baselines come from the cache.
    assert variant["call_cache_seeded_from"] == ws.name
    assert variant["variant_flags"] == "--method kmeans --k 3" and variant["clusters"] == 3
    assert variant["tokens"]["teacher"]["by_stage"]["extract"]["input_tokens"] == 0
    for method in ("zero_shot", "few_shot"):
        assert variant[method]["macro_f1"] == block[method]["macro_f1"]
        assert variant[method]["ci"] == block[method]["ci"]
    assert second["tasks"]["stereoset"] == {**block, **{k: second["tasks"]["stereoset"][k] for k in
                                            ("wall_s_this_invocation", "stage_s_this_invocation",
                                             "tokens", "measured_at", "load_average_1_5_15")}}
    printed = capsys.readouterr().out
    assert "stereoset" in printed and "PLD − nearest 5-shot" in printed
    table = markdown_table(first)
    assert "ours: nearest 5-shot" in table and "PLD − zero-shot" in table


def test_quick_smoke_run_with_seeds_reports_the_spread(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeAnthropic(responder=reply) as teacher, FakeOpenAI(responder=reply) as student:
        student.first_token_logprobs = label_scores
        monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
        monkeypatch.setenv("ANTHROPIC_BASE_URL", teacher.base_url)
        out = tmp_path / "quality.quick.json"
        # Its own teacher name: the backend of "anthropic/claude-test" is cached in this
        # process with the base URL of the other test's fake server.
        assert quality.main(["--quick", "--task", "stereoset", "--seeds", "0,1",
                             "--teacher", "anthropic/claude-quick",
                             "--student", student.model_string(),
                             "--work", str(tmp_path / "work"), "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    block = data["tasks"]["stereoset"]
    assert block["quick"] is True and block["seed"] == 0
    assert (block["n_train"], block["n_val"], block["n_test"]) == (8, 4, 4)
    assert block["few_shot"]["prompt_version"] is None and block["nearest_few_shot"]["n"] == 4
    assert sorted(data["by_seed"]["base"]["stereoset"]) == ["0", "1"]
    spread = data["seed_spread"]["base"]["stereoset"]
    assert spread["seeds"] == ["0", "1"] and spread["pld_post_conflict"]["n"] == 2
    assert spread["pld_post_conflict"]["min"] <= spread["pld_post_conflict"]["mean"]
    assert "Spread over seeds" in markdown_table(data)
    assert len(list((tmp_path / "work").glob("*.db"))) == 2


def test_each_new_part_switched_off_is_a_variant() -> None:
    args = quality.parse_args(["--no-contrastive", "--no-failing-first", "--no-verify-rules",
                               "--method", "dbscan"])
    assert variant_name(args) == "no-contrastive+no-failing-first+no-verify-rules+dbscan"
    assert flags_text(args) == ("--no-contrastive --no-failing-first --no-verify-rules "
                                "--method dbscan")
    base = quality.parse_args([])
    assert variant_name(base) == "" and base.method == "auto" and base.nearest_few_shot == 5
    assert variant_name(quality.parse_args(["--no-verify-rules"])) == "no-verify-rules"
    assert quality.parse_args(["--seeds", "0,1,2"]).seeds == [0, 1, 2]
