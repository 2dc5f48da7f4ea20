"""The Clusters page: start clustering as a job, inspect, accept and edit clusterings."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pandas as pd
from streamlit.testing.v1 import AppTest

from pld import jobs
from pld.identity import Identity
from pld.pipeline.cluster.edits import rename_cluster
from pld.pipeline.cluster.read import cluster_summary, get_clustering, members
from pld.pipeline.cluster.stage import cluster
from pld.tasks import load_task
from pld.workspace import open_workspace
from tests.pages.conftest import (
    SPOOF,
    Populated,
    assert_not_rendered,
    connect,
    rendered,
    unescaped,
)


def _metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def _open_proposed(open_page: Callable[..., AppTest], p: Populated,
                   reviewer: str = "ana") -> AppTest:
    at = open_page("clusters", task=p.task, reviewer=reviewer).run()
    at.selectbox(key="c_clustering").set_value(p.proposed_clustering).run()
    assert not at.exception
    return at


def _frame(at: AppTest, column: str) -> pd.DataFrame:
    """The one dataframe on the page with ``column`` (summary: keywords; members: rule id)."""
    frames = [d.value for d in at.dataframe if column in d.value.columns]
    assert len(frames) == 1
    return frames[0]


def _reviews(p: Populated) -> list[dict[str, object]]:
    with connect(p.path) as ws:
        return ws.query("SELECT who, identity_kind, action FROM reviews "
                        "WHERE entity = 'clustering' ORDER BY id")


def test_empty_workspace_says_what_to_do(open_page: Callable[..., AppTest]) -> None:
    at = open_page("clusters").run()
    assert not at.exception
    assert any("No task" in i.value for i in at.info)


def test_task_without_rules_cannot_start(open_page: Callable[..., AppTest], app_ws: Path) -> None:
    with open_workspace(app_ws) as ws:
        load_task(ws, "demo")
    at = open_page("clusters", task="demo").run()
    assert not at.exception
    assert at.button(key="c_start").disabled
    assert any("No clustering yet" in i.value for i in at.info)


def test_kmeans_on_a_handful_of_rules_offers_a_k_that_fits(
        open_page: Callable[..., AppTest], app_ws: Path) -> None:
    # A new user extracts 6 rules to try things out: k must not default above 6.
    with open_workspace(app_ws) as ws:
        load_task(ws, "demo")
        train = ws.query("SELECT id, label FROM examples WHERE split = 'train' LIMIT 6")
        with ws.write() as db:
            db["micro_instructions"].insert_all(
                {"task": "demo", "example_id": e["id"], "teacher": "t", "rule": f"rule {i}",
                 "label": e["label"], "status": "ok", "created_at": "2026-01-01"}
                for i, e in enumerate(train))
    at = open_page("clusters", task="demo").run()
    at.selectbox(key="c_method").set_value("kmeans").run()
    assert not at.exception
    k = at.number_input(key="c_k")
    assert (k.value, k.proto.max) == (2, 6)


def test_populated_shows_current_clustering(open_page: Callable[..., AppTest],
                                            populated_ws: Populated) -> None:
    at = open_page("clusters", task="demo").run()
    assert not at.exception
    assert at.selectbox(key="c_clustering").value == populated_ws.accepted_clustering
    assert _metrics(at) == {"Clusters": "4", "Noise share": "0.0%", "Silhouette": "0.61",
                            "Rules": "48", "Largest cluster": "25%"}
    assert any("Accepted by ana" in s.value for s in at.success)
    summary = _frame(at, "keywords")
    assert len(summary) == 5 and list(summary["cluster"])[-1] == "noise"
    assert summary["keywords"].iloc[0] == "unauthorised, scam, card"
    fig = at.get("plotly_chart")[0].proto.spec
    assert '"hovertemplate"' in fig and "gold label" in fig
    # Members of the first cluster are listed.
    first = populated_ws.cluster_ids[populated_ws.accepted_clustering][0]
    shown = _frame(at, "rule id")
    with connect(populated_ws.path) as ws:
        expected = [r["id"] for r in members(ws, populated_ws.accepted_clustering, first)]
    assert list(shown["rule id"]) == expected


def test_proposed_clustering_shows_noise_then_is_accepted(open_page: Callable[..., AppTest],
                                                          populated_ws: Populated) -> None:
    at = _open_proposed(open_page, populated_ws)
    assert _metrics(at)["Noise share"] == "4.2%"
    at.button(key="c_accept").click().run()
    assert not at.exception
    assert any("accepted by ana" in s.value for s in at.success)
    with connect(populated_ws.path) as ws:
        assert get_clustering(ws, populated_ws.proposed_clustering)["accepted_by"] == "ana"
        assert get_clustering(ws, populated_ws.accepted_clustering)["status"] == "superseded"
    assert _reviews(populated_ws)[-1] == {"who": "ana", "identity_kind": "self-declared",
                                       "action": "accept"}


def test_accept_without_reviewer_is_refused_clearly(open_page: Callable[..., AppTest],
                                                    populated_ws: Populated) -> None:
    at = _open_proposed(open_page, populated_ws, reviewer="")
    assert any("enter your name" in w.value for w in at.warning)
    at.button(key="c_accept").click().run()
    assert any(unescaped(e.value).startswith("Cannot accept: Nobody is identified")
               for e in at.error)
    with connect(populated_ws.path) as ws:
        assert get_clustering(ws, populated_ws.proposed_clustering)["status"] == "proposed"
    assert _reviews(populated_ws) == []


def test_rename_cluster(open_page: Callable[..., AppTest], populated_ws: Populated) -> None:
    at = _open_proposed(open_page, populated_ws)
    cid = populated_ws.cluster_ids[populated_ws.proposed_clustering][1]
    at.selectbox(key="c_cluster").set_value(cid).run()
    at.text_input(key=f"c_name_{cid}").input("Data-protection rights").run()
    at.button(key="c_rename").click().run()
    assert not at.exception and not at.error
    with connect(populated_ws.path) as ws:
        names = {s["id"]: s["name"] for s in cluster_summary(ws, populated_ws.proposed_clustering)}
    assert names[cid] == "Data-protection rights"
    assert _reviews(populated_ws)[-1] == {"who": "ana", "identity_kind": "self-declared",
                                       "action": "rename_cluster"}
    # Who named it is shown, in the table and beside the cluster.
    summary = _frame(at, "keywords").set_index("cluster")
    assert summary.loc[str(cid), "named by"].startswith("ana (self-declared), ")
    others = summary.drop(index=[str(cid), "noise"])["named by"]
    assert set(others) == {"automatic (keywords)"}
    assert any(unescaped(c.value).startswith("Named by ana (self-declared)") for c in at.caption)
    # The picker sends its chosen option again, so the browser shows the new name, not the old.
    picker = at.selectbox(key="c_cluster")
    assert picker.proto.set_value and picker.proto.raw_value.startswith(
        f"{cid}: Data-protection rights (")


def test_merge_two_clusters(open_page: Callable[..., AppTest], populated_ws: Populated) -> None:
    at = _open_proposed(open_page, populated_ws)
    a, b = populated_ws.cluster_ids[populated_ws.proposed_clustering][2:4]
    with connect(populated_ws.path) as ws:
        before = {s["id"]: s["size"] for s in cluster_summary(ws, populated_ws.proposed_clustering)}
    at.selectbox(key="c_cluster").set_value(a).run()
    at.selectbox(key="c_merge_with").set_value(b).run()
    at.button(key="c_merge").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    with connect(populated_ws.path) as ws:
        summary = {s["id"]: s for s in cluster_summary(ws, populated_ws.proposed_clustering)}
        assert b not in summary and summary[a]["size"] == before[a] + before[b]
        assert get_clustering(ws, populated_ws.proposed_clustering)["metrics"]["n_clusters"] == 3
    assert _metrics(at)["Clusters"] == "3"
    assert _reviews(populated_ws)[-1] == {"who": "ana", "identity_kind": "self-declared",
                                       "action": "merge_clusters"}


def test_send_rules_to_noise_and_back(open_page: Callable[..., AppTest],
                                      populated_ws: Populated) -> None:
    at = _open_proposed(open_page, populated_ws)
    cid = populated_ws.cluster_ids[populated_ws.proposed_clustering][0]
    at.selectbox(key="c_cluster").set_value(cid).run()
    rule = at.multiselect(key="c_move_rules").options[0]
    rule_id = int(rule.lstrip("#").split(" · ")[0])
    at.multiselect(key="c_move_rules").select(rule_id)
    at.selectbox(key="c_move_to").set_value(-1).run()
    at.button(key="c_move").click().run()
    assert not at.error, [e.value for e in at.error]
    assert _member_cluster(populated_ws, rule_id) is None
    assert _metrics(at)["Noise share"] == "6.2%"
    # Back from noise into its cluster.
    at.selectbox(key="c_cluster").set_value(-1).run()
    at.multiselect(key="c_move_rules").select(rule_id)
    at.selectbox(key="c_move_to").set_value(cid).run()
    at.button(key="c_move").click().run()
    assert not at.error, [e.value for e in at.error]
    assert _member_cluster(populated_ws, rule_id) == cid


def _member_cluster(p: Populated, rule_id: int) -> int | None:
    with connect(p.path) as ws:
        return ws.query("SELECT cluster_id FROM cluster_members WHERE clustering_id = ? AND "
                        "rule_id = ?", [p.proposed_clustering, rule_id])[0]["cluster_id"]


def test_split_cluster(open_page: Callable[..., AppTest], populated_ws: Populated) -> None:
    at = _open_proposed(open_page, populated_ws)
    cid = populated_ws.cluster_ids[populated_ws.proposed_clustering][0]
    at.selectbox(key="c_cluster").set_value(cid).run()
    at.number_input(key="c_split_k").set_value(2)
    at.button(key="c_split").click().run()
    assert not at.error, [e.value for e in at.error]
    assert _metrics(at)["Clusters"] == "5"


def test_structural_edits_of_a_clustering_with_heuristics_are_off_before_the_click(
        open_page: Callable[..., AppTest], populated_ws: Populated) -> None:
    at = open_page("clusters", task="demo", reviewer="ana").run()
    assert at.selectbox(key="c_clustering").value == populated_ws.accepted_clustering
    for key in ("c_move", "c_merge", "c_split"):
        assert at.button(key=key).disabled, key
        assert "already has heuristics" in at.button(key=key).help
    assert at.multiselect(key="c_move_rules").disabled
    assert any(unescaped(c.value).startswith("Move, merge and split are off: clustering "
                                  f"{populated_ws.accepted_clustering} already has heuristics")
               for c in at.caption)
    assert not at.button(key="c_rename").disabled  # a name does not change what was merged
    # The proposed clustering (no heuristics) has them on.
    at.selectbox(key="c_clustering").set_value(populated_ws.proposed_clustering).run()
    assert not any(at.button(key=k).disabled for k in ("c_move", "c_merge", "c_split"))


def test_the_rule_picker_names_each_rule(open_page: Callable[..., AppTest],
                                         populated_ws: Populated) -> None:
    at = _open_proposed(open_page, populated_ws)
    picker = at.multiselect(key="c_move_rules")
    rows = {r["rule id"]: r for r in _frame(at, "rule id").to_dict("records")}
    assert picker.options and len(picker.options) == len(rows)
    for option, (rid, row) in zip(picker.options, rows.items(), strict=True):
        assert option.startswith(f"#{rid} · {row['gold label']} · {row['rule'][:20]}")


def test_start_clustering_launches_a_job(open_page: Callable[..., AppTest],
                                         populated_ws: Populated) -> None:
    at = open_page("clusters", task="demo").run()
    at.selectbox(key="c_method").set_value("dbscan").run()
    at.checkbox(key="c_eps_auto").uncheck().run()
    at.number_input(key="c_eps").set_value(0.35)
    at.number_input(key="c_min_samples").set_value(4)
    at.checkbox(key="c_cover").check()
    at.button(key="c_start").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    launched = jobs.list_jobs(populated_ws.path, "demo", "cluster")
    assert len(launched) == 1
    assert launched[0].args == ["cluster", "demo", "--method", "dbscan", "--eps", "0.35",
                                "--min-samples", "4", "--cover-labels"]
    assert any("Clustering started" in s.value for s in at.success)
    with connect(populated_ws.path) as ws:
        jobs.cancel(ws, launched[0])


def test_stale_rename_is_refused_and_shown(open_page: Callable[..., AppTest],
                                           populated_ws: Populated) -> None:
    at = _open_proposed(open_page, populated_ws)
    cid = populated_ws.cluster_ids[populated_ws.proposed_clustering][1]
    at.selectbox(key="c_cluster").set_value(cid).run()
    seen = at.text_input(key=f"c_name_{cid}").value
    # Someone else renames the cluster in another tab, after this page was drawn.
    with connect(populated_ws.path) as ws:
        rename_cluster(ws, cid, "Privacy (bea)", Identity("bea"), expected_name=seen)
    at.text_input(key=f"c_name_{cid}").input("Privacy (ana)")
    at.button(key="c_rename").click().run()
    assert not at.exception
    warning = unescaped(" ".join(w.value for w in at.warning))
    assert "someone changed it first" in warning and "'Privacy (bea)'" in warning
    assert "by bea" in warning and repr(seen) in warning
    with connect(populated_ws.path) as ws:
        names = {s["id"]: s["name"] for s in cluster_summary(ws, populated_ws.proposed_clustering)}
    assert names[cid] == "Privacy (bea)"  # theirs is kept, nothing overwritten
    assert [r["who"] for r in _reviews(populated_ws)] == ["bea"]
    # Reloaded, the page shows their name, and a rename from there is saved.
    at.run()
    assert at.text_input(key=f"c_name_{cid}").value == "Privacy (bea)"
    at.text_input(key=f"c_name_{cid}").input("Privacy").run()
    at.button(key="c_rename").click().run()
    assert not at.warning and not at.error
    assert [r["who"] for r in _reviews(populated_ws)] == ["bea", "ana"]


def test_name_saved_in_another_tab_shows_after_a_rerun(open_page: Callable[..., AppTest],
                                                       populated_ws: Populated) -> None:
    at = _open_proposed(open_page, populated_ws)
    cid = populated_ws.cluster_ids[populated_ws.proposed_clustering][1]
    at.selectbox(key="c_cluster").set_value(cid).run()
    with connect(populated_ws.path) as ws:
        rename_cluster(ws, cid, "Privacy (bea)", Identity("bea"))
    at.run()
    assert at.text_input(key=f"c_name_{cid}").value == "Privacy (bea)"
    # Clicking Rename now sends nothing stale back: the name stays theirs.
    at.button(key="c_rename").click().run()
    with connect(populated_ws.path) as ws:
        names = {s["id"]: s["name"] for s in cluster_summary(ws, populated_ws.proposed_clustering)}
    assert names[cid] == "Privacy (bea)"


def test_rule_text_names_and_reviewers_are_shown_literally(open_page: Callable[..., AppTest],
                                                           populated_ws: Populated) -> None:
    """Rule text, cluster names and keywords (model-written) and the accepting reviewer's name
    are neither Markdown in captions nor HTML in the chart's hover labels and legend."""
    html_spoof = '<b>APPROVED</b> <a href="http://evil">click</a> &lt;i&gt;'
    clustering = populated_ws.accepted_clustering
    cid = populated_ws.cluster_ids[clustering][0]
    with connect(populated_ws.path) as ws:
        rule_id = members(ws, clustering, cid)[0]["id"]
        with ws.write() as db:
            db.execute("UPDATE micro_instructions SET rule = ? WHERE id = ?",
                       [html_spoof + " " + SPOOF, rule_id])
            db.execute("UPDATE clusters SET name = ?, keywords = ? WHERE id = ?",
                       [html_spoof, json.dumps([SPOOF, "a_*b*"]), cid])
            db.execute("UPDATE clusterings SET accepted_by = ? WHERE id = ?",
                       ["bob_*x*", clustering])
    at = open_page("clusters", task="demo").run()
    at.selectbox(key="c_cluster").set_value(cid).run()
    assert not at.exception
    assert_not_rendered(at)
    html = rendered(at)
    assert "Accepted by bob_*x* at" in html
    assert "Keywords (c-TF-IDF): **APPROVED by alice** [click](http://evil)" in html
    assert "a_*b*" in html
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    legend = [t["name"] for t in spec["data"]]
    hovers = [str(v) for t in spec["data"] for row in t.get("customdata") or [] for v in row]
    # Plotly reads these as HTML: no tag or entity of the model's may reach it unescaped.
    assert not [s for s in legend + hovers if "<b>" in s or "<a " in s or "&lt;i" in s]
    escaped = ('&lt;b&gt;APPROVED&lt;/b&gt; &lt;a href="http://evil"&gt;click&lt;/a&gt; '
               "&amp;lt;i&amp;gt;")
    assert any(s.startswith(escaped) for s in hovers)  # the rule's hover label
    assert f"{cid}: {escaped}" in legend


def test_the_new_name_box_opens_with_the_current_name_on_every_visit(
        visit_pages: Callable[..., Callable[[str], AppTest]], populated_ws: Populated) -> None:
    # Before: after another page (or another cluster) the box opened empty, and renaming from
    # it was refused as an empty name.
    visit = visit_pages(task=populated_ws.task, reviewer="ana")
    at = visit("clusters")
    [box] = [t for t in at.text_input if t.key.startswith("c_name_")]
    name = box.value
    assert name
    visit("home")
    at = visit("clusters")
    assert at.text_input(key=box.key).value == name
    cid = int(box.key.removeprefix("c_name_"))
    other = next(c for c in populated_ws.cluster_ids[populated_ws.accepted_clustering]
                 if c != cid)
    at.selectbox(key="c_cluster").set_value(other).run()
    at.selectbox(key="c_cluster").set_value(cid).run()
    assert at.text_input(key=box.key).value == name
    # What the reviewer types stays while the page reruns, and is what the rename saves.
    at.text_input(key=box.key).input("Card fraud").run()
    at.run()
    assert at.text_input(key=box.key).value == "Card fraud"
    at.button(key="c_rename").click().run()
    assert not at.exception and not at.error
    with connect(populated_ws.path) as ws:
        names = {s["id"]: s["name"] for s in cluster_summary(ws, populated_ws.accepted_clustering)}
    assert names[cid] == "Card fraud"


def test_the_choice_of_method_is_shown_and_a_collapse_chosen_by_a_person_is_marked(
        open_page: Callable[..., AppTest], populated_ws: Populated) -> None:
    with connect(populated_ws.path) as ws:
        auto = cluster(ws, "demo")
        collapse = cluster(ws, "demo", method="dbscan", eps=2.0, min_samples=2,
                           started_by=Identity("bea"))
        tried = len(get_clustering(ws, auto)["params"]["auto"]["candidates"])
    at = open_page("clusters", task="demo").run()
    at.selectbox(key="c_clustering").set_value(auto).run()
    assert not at.exception
    assert any(unescaped(c.value).startswith("How it was chosen: auto kept")
               for c in at.caption)
    assert len(_frame(at, "clustering tried")) == tried
    assert not any("One cluster holds" in unescaped(w.value) for w in at.warning)

    at.selectbox(key="c_clustering").set_value(collapse).run()
    assert not at.exception
    assert _metrics(at)["Largest cluster"] == "100%"
    assert any("dbscan chosen explicitly by bea" in unescaped(c.value) for c in at.caption)
    assert any("One cluster holds 100% of the rules" in unescaped(w.value) for w in at.warning)


def test_auto_is_the_default_method(open_page: Callable[..., AppTest],
                                    populated_ws: Populated) -> None:
    at = open_page("clusters", task="demo").run()
    assert at.selectbox(key="c_method").value == "auto"
    at.button(key="c_start").click().run()
    assert not at.exception
    (job,) = jobs.list_jobs(populated_ws.path, "demo", "cluster")
    assert job.args == ["cluster", "demo", "--method", "auto", "--min-samples", "6"]
    with connect(populated_ws.path) as ws:
        jobs.cancel(ws, job)
