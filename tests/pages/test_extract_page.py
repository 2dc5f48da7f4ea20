"""The Micro-instructions page: start extraction as a job, page/filter/open the rules."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from pld import jobs
from pld.identity import Identity
from pld.tasks.store import Example, save_task
from pld.workspace import dumps, now, open_workspace
from tests.fakes.openai_server import FakeOpenAI
from tests.pages.conftest import (
    SPOOF,
    Populated,
    assert_not_rendered,
    connect,
    rendered,
    unescaped,
)

N_BIG = 10_000


def _table(at: AppTest) -> pd.DataFrame:
    tables = [d for d in at.dataframe if d.key == "x_table"]
    assert len(tables) == 1
    return tables[0].value


@pytest.fixture
def big_ws(app_ws: Path) -> Path:
    """A workspace with one task of 10,000 training examples, each with an ok rule."""
    ws = open_workspace(app_ws)
    save_task(ws, name="big", kind="custom", labels=["no", "yes"], description="", source="",
              params={}, examples=(Example(f"e{i}", "train", f"example {i}",
                                           "yes" if i % 3 == 0 else "no", {})
                                   for i in range(N_BIG)))
    ids = [r["id"] for r in ws.query("SELECT id FROM examples ORDER BY id")]
    stamp = now()
    with ws.write() as db:
        db["micro_instructions"].insert_all((
            {"task": "big", "example_id": eid, "run_id": None, "teacher": "local/default",
             "reasoning": f"reason {i}", "rule": f"If the text says thing {i}, the label is "
             f"{'yes' if i % 3 == 0 else 'no'}.", "label": "yes" if i % 3 == 0 else "no",
             "status": "ok", "flags": dumps([]), "created_at": stamp}
            for i, eid in enumerate(ids)), batch_size=1000)
    ws.close()
    return app_ws


def test_empty_workspace_says_what_to_do(open_page: Callable[..., AppTest]) -> None:
    at = open_page("extract").run()
    assert not at.exception
    assert any("Data" in i.value and "No task" in i.value for i in at.info)


def test_task_without_rules_offers_extraction(open_page: Callable[..., AppTest],
                                              app_ws: Path) -> None:
    from pld.tasks import load_task

    with open_workspace(app_ws) as ws:
        load_task(ws, "demo")
    at = open_page("extract", task="demo").run()
    assert not at.exception
    assert any("No micro-instructions yet" in i.value for i in at.info)
    assert not at.button(key="x_start").disabled
    # The cost of these settings, before Start, without calling the teacher.
    at.number_input(key="x_limit").set_value(20).run()
    at.button(key="x_estimate").click().run()
    assert not at.exception
    shown = [t.value for t in at.text if t.value.startswith("Estimate: ")]
    assert shown == ["Estimate: 20 calls (0 already cached, free), ~" + shown[0].split("~", 1)[1]]
    assert "$0.0000 at list price" in shown[0]  # the embedded model costs nothing
    with open_workspace(app_ws) as ws:
        assert ws.query("SELECT count(*) AS n FROM llm_calls")[0]["n"] == 0
    # Other settings, another estimate: the old one is not shown for them.
    at.number_input(key="x_limit").set_value(10).run()
    assert not [t for t in at.text if t.value.startswith("Estimate: ")]


def test_populated_rules_and_detail(open_page: Callable[..., AppTest],
                                    populated_ws: Populated) -> None:
    at = open_page("extract", task="demo").run()
    assert not at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert metrics == {"Rules": "50", "Failed": "2", "Flagged": "8", "Restate the task": "0"}
    table = _table(at)
    assert list(table["id"]) == populated_ws.rule_ids
    # The first rule is open: its example and reasoning are shown.
    first = populated_ws.rule_ids[0]
    assert at.selectbox(key="x_open").value == first
    assert any(f"Rule #{first}" in m.value for m in at.markdown)


def test_selecting_a_table_row_opens_that_rule(open_page: Callable[..., AppTest],
                                               populated_ws: Populated) -> None:
    at = open_page("extract", task="demo").run()
    at.session_state["x_table"] = {"selection": {"rows": [3], "columns": [], "cells": []}}
    at.run()
    assert at.selectbox(key="x_open").value == populated_ws.rule_ids[3]
    # The selectbox can still open another rule while the row stays selected.
    at.selectbox(key="x_open").set_value(populated_ws.rule_ids[5]).run()
    assert at.selectbox(key="x_open").value == populated_ws.rule_ids[5]


def test_open_failed_rule_shows_error_raw_reply_and_call(open_page: Callable[..., AppTest],
                                                         populated_ws: Populated) -> None:
    at = open_page("extract", task="demo").run()
    failed = populated_ws.failed_rule_ids[0]
    at.selectbox(key="x_open").set_value(failed).run()
    assert not at.exception
    assert any("invalid JSON twice" in e.value for e in at.error)
    codes = [c.value for c in at.code]
    assert "Sure! The rule is..." in codes  # raw reply, and again as the call's response
    assert any(c.startswith("Example: ") for c in codes)  # the call's user message


def test_filters_by_status_flag_and_search(open_page: Callable[..., AppTest],
                                           populated_ws: Populated) -> None:
    at = open_page("extract", task="demo").run()
    at.selectbox(key="x_status").set_value("failed").run()
    assert list(_table(at)["id"]) == populated_ws.failed_rule_ids
    at.selectbox(key="x_status").set_value("(all)")
    at.selectbox(key="x_flag").set_value("copies_example").run()
    assert list(_table(at)["id"]) == populated_ws.flagged_rule_ids
    at.selectbox(key="x_flag").set_value("(all)")
    at.text_input(key="x_search").input("chequebook").run()
    table = _table(at)
    assert len(table) > 0 and all("chequebook" in r for r in table["rule"])


def test_ten_thousand_rules_page_without_loading_all(open_page: Callable[..., AppTest],
                                                     big_ws: Path) -> None:
    at = open_page("extract", task="big").run()
    assert not at.exception
    assert at.metric[0].value == "10000"
    first = _table(at)
    assert len(first) == 50  # one page is all the page holds
    assert any("Rules 1–50 of 10,000" in c.value for c in at.caption)
    assert at.pagination[0].num_pages == N_BIG // 50
    at.pagination[0].set_value(2).run()
    second = _table(at)
    assert len(second) == 50
    assert set(first["id"]).isdisjoint(second["id"])
    assert any("Rules 51–100 of 10,000" in c.value for c in at.caption)


def test_filter_by_label_counts_and_pages(open_page: Callable[..., AppTest],
                                          big_ws: Path) -> None:
    at = open_page("extract", task="big").run()
    at.pagination[0].set_value(3).run()
    at.selectbox(key="x_label").set_value("yes").run()
    assert at.pagination[0].value == 1  # a new filter starts from the first page
    table = _table(at)
    assert len(table) == 50 and set(table["gold label"]) == {"yes"}
    n_yes = len([i for i in range(N_BIG) if i % 3 == 0])
    assert any(f"of {n_yes:,} matching" in c.value for c in at.caption)
    assert at.pagination[0].num_pages == -(-n_yes // 50)


def test_start_launches_a_job_and_disables_start(open_page: Callable[..., AppTest],
                                                 populated_ws: Populated,
                                                 fake_openai: FakeOpenAI) -> None:
    fake_openai.delay_s = 2.0
    at = open_page("extract", task="demo", teacher=fake_openai.model_string()).run()
    assert not at.button(key="x_start").disabled
    at.number_input(key="x_limit").set_value(3)
    at.number_input(key="x_concurrency").set_value(1)
    at.checkbox(key="x_retry_failed").check()
    at.button(key="x_start").click().run()
    assert not at.exception
    launched = jobs.list_jobs(populated_ws.path, "demo", "extract")
    assert len(launched) == 1
    assert launched[0].args == ["extract", "demo", "--teacher", fake_openai.model_string(),
                                "--limit", "3", "--concurrency", "1", "--retry-failed"]
    assert any("Extraction started" in s.value for s in at.success)
    # The command as people read it: before, Markdown backticks showed literally around it.
    assert any(f"(pld extract demo --teacher {fake_openai.model_string()} " in unescaped(s.value)
               for s in at.success)
    assert not any("`" in unescaped(s.value) for s in at.success)
    # The next run (or another tab) sees it running: Start is disabled, progress is shown.
    at.run()
    assert at.button(key="x_start").disabled
    assert len(at.get("progress")) == 1
    other = open_page("extract", task="demo", teacher=fake_openai.model_string()).run()
    assert other.button(key="x_start").disabled
    with connect(populated_ws.path) as ws:
        assert jobs.cancel(ws, launched[0]) == "interrupted"


def _members(populated: Populated, clustering_id: int, cluster_id: int | None) -> list[int]:
    with connect(populated.path) as ws:
        sql = ("SELECT rule_id FROM cluster_members WHERE clustering_id = ? AND "
               + ("cluster_id IS NULL" if cluster_id is None else "cluster_id = ?")
               + " ORDER BY rule_id")
        args = [clustering_id] if cluster_id is None else [clustering_id, cluster_id]
        return [r["rule_id"] for r in ws.query(sql, args)]


def test_cluster_filter_shows_one_cluster_of_the_accepted_clustering(
        open_page: Callable[..., AppTest], populated_ws: Populated) -> None:
    accepted = populated_ws.accepted_clustering
    key = f"x_cluster_{accepted}"
    at = open_page("extract", task="demo").run()
    box = at.selectbox(key=key)
    clusters = populated_ws.cluster_ids[accepted]
    assert box.options == ["(all)", *(box.format_func(c) for c in clusters),
                           box.format_func("noise")]
    second = clusters[1]
    box.set_value(second).run()
    assert not at.exception
    expected = _members(populated_ws, accepted, second)
    assert 0 < len(expected) < len(populated_ws.ok_rule_ids)
    assert list(_table(at)["id"]) == expected
    assert any(f"of {len(expected):,} matching" in c.value for c in at.caption)
    # The accepted clustering has no noise: nothing matches, and the page says so.
    at.selectbox(key=key).set_value("noise").run()
    assert any("No rule matches" in i.value for i in at.info)


def test_cluster_filter_follows_a_newly_accepted_clustering(
        open_page: Callable[..., AppTest], populated_ws: Populated) -> None:
    from pld.pipeline.cluster.edits import accept_clustering

    at = open_page("extract", task="demo").run()
    at.selectbox(key=f"x_cluster_{populated_ws.accepted_clustering}").set_value("noise").run()
    proposed = populated_ws.proposed_clustering
    with connect(populated_ws.path) as ws:
        accept_clustering(ws, proposed, Identity("bea"))
    at.run()
    box = at.selectbox(key=f"x_cluster_{proposed}")
    assert box.value == "(all)"  # the old clustering's choice does not carry over
    box.set_value("noise").run()
    assert list(_table(at)["id"]) == populated_ws.noise_rule_ids == _members(
        populated_ws, proposed, None)


@pytest.fixture
def big_clustered(big_ws: Path) -> tuple[Path, int, int]:
    """``big_ws`` with an accepted clustering: every 4th rule in cluster A, every 4th+1 in B,
    the rest noise. Returns (path, clustering id, id of cluster A)."""
    ws = open_workspace(big_ws)
    ids = [r["id"] for r in ws.query("SELECT id FROM micro_instructions ORDER BY id")]
    with ws.write() as db:
        cid = int(db["clusterings"].insert({
            "task": "big", "method": "kmeans", "embed_model": "minilm", "params": dumps({}),
            "metrics": dumps({"n_clusters": 2}), "status": "accepted",
            "created_at": now()}).last_pk)
        a, b = (int(db["clusters"].insert({
            "clustering_id": cid, "label": k, "name": name, "keywords": dumps([]),
            "size": N_BIG // 4}).last_pk) for k, name in enumerate(("a", "b")))
        db["cluster_members"].insert_all(
            ({"clustering_id": cid, "rule_id": rid,
              "cluster_id": {0: a, 1: b}.get(i % 4), "x": 0.0, "y": 0.0}
             for i, rid in enumerate(ids)), batch_size=1000)
    ws.close()
    return big_ws, cid, a


def test_count_and_list_rules_filter_by_cluster_in_sql(
        big_clustered: tuple[Path, int, int]) -> None:
    from pld.pipeline.extract.browse import count_rules, list_rules

    path, clustering, a = big_clustered
    with open_workspace(path) as ws:
        all_ids = [r["id"] for r in ws.query("SELECT id FROM micro_instructions ORDER BY id")]
        assert count_rules(ws, "big", cluster=(clustering, a)) == N_BIG // 4
        assert count_rules(ws, "big", cluster=(clustering, None)) == N_BIG // 2
        assert count_rules(ws, "big", cluster=(clustering + 99, None)) == 0
        assert count_rules(ws, "big", cluster=(clustering, a), label="yes") == len(
            [i for i in range(0, N_BIG, 4) if i % 3 == 0])
        page = list_rules(ws, "big", cluster=(clustering, a), limit=10, offset=10)
        assert [r["id"] for r in page] == all_ids[40:80:4]


def test_ten_thousand_rules_filter_by_cluster_and_page(
        open_page: Callable[..., AppTest], big_clustered: tuple[Path, int, int]) -> None:
    _, clustering, a = big_clustered
    at = open_page("extract", task="big").run()
    at.pagination[0].set_value(4).run()
    at.selectbox(key=f"x_cluster_{clustering}").set_value(a).run()
    assert not at.exception
    assert at.pagination[0].value == 1  # a new filter starts from the first page
    assert len(_table(at)) == 50
    assert at.pagination[0].num_pages == N_BIG // 4 // 50
    assert any("Rules 1–50 of 2,500 matching" in c.value for c in at.caption)
    at.selectbox(key=f"x_cluster_{clustering}").set_value("noise").run()
    assert any("of 5,000 matching" in c.value for c in at.caption)


def test_error_example_id_label_and_model_are_shown_literally(
        open_page: Callable[..., AppTest], populated_ws: Populated) -> None:
    """A failed rule's error quotes the teacher's reply; an example's id and gold label come from
    the uploader; the model string from whoever started the run: none renders as Markdown."""
    failed = populated_ws.failed_rule_ids[0]
    with connect(populated_ws.path) as ws, ws.write() as db:
        db.execute("UPDATE micro_instructions SET error = ? WHERE id = ?", [SPOOF, failed])
        db.execute("UPDATE examples SET ext_id = ?, label = ? WHERE id = (SELECT example_id "
                   "FROM micro_instructions WHERE id = ?)",
                   ["e1` **APPROVED** [click](http://evil) `", "a_*b*", failed])
        db.execute("UPDATE llm_calls SET model = ? WHERE id = (SELECT call_id "
                   "FROM micro_instructions WHERE id = ?)", ["m_*x*", failed])
    at = open_page("extract", task="demo").run()
    at.selectbox(key="x_open").set_value(failed).run()
    assert not at.exception
    assert_not_rendered(at)
    assert [unescaped(e.value) for e in at.error] == [" ".join(SPOOF.split("\n"))]
    html = rendered(at)
    assert "e1` **APPROVED** [click](http://evil) `" in html and "<code>" not in html
    assert "gold <strong>a_*b*</strong>" in html
    assert "call #" in html and " · m_*x* · " in html


def _with_evidence(populated: Populated) -> int:
    """Give the first ok rule a contrast example, stored evidence and a restatement flag, all
    carrying Markdown that must show as written; return the rule's id."""
    rule_id = populated.ok_rule_ids[0]
    with connect(populated.path) as ws, ws.write() as db:
        rule = ws.query("SELECT * FROM micro_instructions WHERE id = ?", [rule_id])[0]
        contrast = ws.query("SELECT id FROM examples WHERE task = 'demo' AND split = 'train' "
                            "AND label != ? ORDER BY id LIMIT 1", [rule["label"]])[0]["id"]
        db.execute("UPDATE examples SET text = ? WHERE id = ?", [SPOOF, contrast])
        db.execute("UPDATE micro_instructions SET source_examples = ?, task_similarity = 0.81, "
                   "similar_to = ?, flags = ? WHERE id = ?",
                   [dumps({"source": rule["example_id"], "contrast": [contrast]}),
                    "the label name '**APPROVED by alice**'", dumps(["restates_task"]), rule_id])
        db["rule_evidence"].insert({
            "rule_id": rule_id, "student": "m_*x*", "task": "demo", "status": "verified",
            "effect": 0.004, "helped": 0, "hurt": 1, "n": 2, "created_at": now(),
            "items": dumps([
                {"example_id": rule["example_id"], "role": "source", "gold": rule["label"],
                 "zero_shot": 0.4, "with_rule": 0.41, "answer_zero_shot": rule["label"],
                 "answer_with_rule": rule["label"]},
                {"example_id": contrast, "role": "contrast", "gold": "**x**",
                 "zero_shot": 0.5, "with_rule": 0.4, "answer_zero_shot": "**x**",
                 "answer_with_rule": rule["label"]}])})
    return rule_id


def test_a_rules_pair_evidence_and_restatement_are_shown_as_written(
        open_page: Callable[..., AppTest], populated_ws: Populated) -> None:
    rule_id = _with_evidence(populated_ws)
    at = open_page("extract", task="demo").run()
    at.selectbox(key="x_open").set_value(rule_id).run()
    assert not at.exception
    assert_not_rendered(at)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Restate the task"] == "1"
    table = _table(at)
    effects = dict(zip(table["id"], table["effect"], strict=True))
    assert effects[rule_id] == 0.004 and pd.isna(effects[populated_ws.ok_rule_ids[1]])
    # The source and the contrast side by side, their texts plain.
    titles = [m.value for m in at.markdown if m.value.startswith("**")]
    assert any(t.startswith("**Source example**") for t in titles)
    assert any(t.startswith("**Contrast example**") for t in titles)
    assert SPOOF in [t.value for t in at.text]
    # The evidence, item by item, and why the rule reads as a restatement.
    html = rendered(at)
    assert "m_*x*: effect +0.004 on 2 items; 0 moved toward the gold label and 1 away" in html
    evidence = next(d.value for d in at.dataframe if "P(gold) with the rule" in d.value)
    assert list(evidence["role"]) == ["source", "contrast"]
    assert list(evidence["change"]) == [0.01, -0.1]
    [warning] = [w.value for w in at.warning if "Restates the task" in unescaped(w.value)]
    assert unescaped(warning).startswith(
        "Restates the task: its condition reads like the label name '**APPROVED by alice**' "
        "(similarity 0.81 >= 0.50) and, alone in the student's prompt, it moved the gold "
        "label's probability by +0.004")
    # A rule without a contrast or evidence says so.
    at.selectbox(key="x_open").set_value(populated_ws.ok_rule_ids[1]).run()
    assert any("Not verified yet" in unescaped(c.value) for c in at.caption)
    assert any("Written from this example alone" in c.value for c in at.caption)


def test_extraction_options_and_verification_start_their_jobs(
        open_page: Callable[..., AppTest], populated_ws: Populated,
        fake_openai: FakeOpenAI) -> None:
    fake_openai.delay_s = 2.0
    model = fake_openai.model_string()
    at = open_page("extract", task="demo", teacher=model, student=model).run()
    at.checkbox(key="x_contrastive").uncheck()
    at.checkbox(key="x_where_student_fails").check()
    at.button(key="x_start").click().run()
    assert not at.exception
    [extract] = jobs.list_jobs(populated_ws.path, "demo", "extract")
    assert extract.args == ["extract", "demo", "--teacher", model, "--no-contrastive",
                            "--student", model]
    at.button(key="x_verify").click().run()
    assert not at.exception
    [verify] = jobs.list_jobs(populated_ws.path, "demo", "verify")
    assert verify.args == ["rules", "verify", "demo", "--student", model]
    assert any("Verifying the rules" in s.value for s in at.success)
    with connect(populated_ws.path) as ws:
        for job in (extract, verify):
            jobs.cancel(ws, job)
