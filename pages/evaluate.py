"""Evaluate: score a prompt version and the zero-/k-shot baselines with the same student on the
same items, look at one evaluation in detail, and compare two (:mod:`pld.pipeline.evaluate`)."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from pld.number_format import delta_text, score, score_text
from pld.pipeline import evaluate, student
from pld.pipeline.eval_errors import CALIBRATED, RAW
from pld.tasks.store import examples
from pld.ui import page, sidebar
from pld.ui.escape import literal, say
from pld.ui.launcher import Launch, job_section, start_controls
from pld.ui.tables import untrusted_table
from pld.ui.wrong_items import confusion_chart, wrong_items_section
from pld.workspace import Workspace

VERSION, ZERO, FEW = "Prompt version", "Zero-shot baseline", "Few-shot baseline"
# For each item the K training examples most similar to it: the strongest cheap baseline.
NEAREST = "Nearest k-shot baseline"


def _eval_args(task: str, model: str) -> list[str]:
    """The ``eval`` command line for the choices made in the run form."""
    method = st.session_state.get("e_method") or VERSION
    args = ["eval", task, "--student", model,
            "--split", st.session_state.get("e_split") or "test"]
    if method == VERSION:
        args += ["--version", str(st.session_state["e_version"])]
    elif method == ZERO:
        args += ["--zero-shot"]
    else:
        args += ["--few-shot", str(int(st.session_state.get("e_k") or 8))]
        if method == NEAREST:
            args += ["--nearest"]
    limit = int(st.session_state.get("e_limit") or 0)
    if limit:
        args += ["--limit", str(limit)]
    args += ["--calibration", st.session_state.get("e_calibration") or "max-f1"]
    return args


def _run_section(ws: Workspace, task: str, versions: list[int], has_evals: bool) -> None:
    model = sidebar.model("student")
    with job_section(ws, task, "eval", "Run an evaluation", expanded=not has_evals):
        st.write(f"Student {literal(model)} answers the first items of the chosen split under each "
                 "method's system prompt; every method sees the same items, so scores compare.")
        methods = [VERSION, ZERO, FEW, NEAREST] if versions else [ZERO, FEW, NEAREST]
        method = st.radio("Method", methods, key="e_method", horizontal=True)
        c1, c2, c3 = st.columns(3)
        if method == VERSION:
            page.follow_newest("e_version", versions, versions[-1], scope=task)
            c1.selectbox("Prompt version", versions, key="e_version",
                         format_func=lambda v: f"v{v}")
        elif method in (FEW, NEAREST):
            c1.number_input("Demonstrations (K)", min_value=1, max_value=64, value=8, key="e_k",
                            help="Few-shot: K training examples drawn at random, the same for "
                                 "every item. Nearest: for each item the K training examples "
                                 "most similar to it.")
        c2.selectbox("Split", ["test", "val"], key="e_split")
        c3.number_input("Items (0 = all)", min_value=0, value=0, step=50, key="e_limit")
        st.selectbox(
            "Calibration", ["max-f1", "content-free", "none"], key="e_calibration",
            help="A per-label bias on the student's label scores, fitted on the validation "
                 "split only (max-f1: the bias with the best validation macro-F1; "
                 "content-free: cancels the student's answer on inputs without content). "
                 "Scores are shown raw and calibrated.")
        if not versions:
            st.caption("No prompt version yet: build one on the Export page (or run the "
                       "conflict loop) to evaluate distilled heuristics.")
        start_controls(ws, task, Launch(
            "eval", "Run evaluation", key="e_run", prefix="e", started="Evaluation started",
            command=lambda: _eval_args(task, model), models=(model,), priced=True))


def _name(ev: dict[str, Any]) -> str:
    version = f" v{ev['prompt_version']}" if ev["prompt_version"] is not None else ""
    f1 = ev["metrics"].get("macro_f1")
    cal = _calibrated(ev["metrics"]).get("macro_f1")
    score = (f" · F1 {score_text(f1)}" if f1 is not None else "") + (
        f" (calibrated {score_text(cal)})" if cal is not None else "")
    return f"#{ev['id']} {ev['method']}{version} · {ev['split']} n={ev['n']}{score}"


def _ci(m: dict[str, Any], key: str) -> str:
    ci = m.get("ci")
    if not ci:
        return "no CI"
    lo, hi = ci[key]
    return f"{int(ci['level'] * 100)}% CI [{score_text(lo)}, {score_text(hi)}]"


def _calibrated(m: dict[str, Any]) -> dict[str, Any]:
    return m.get("calibrated") or {}


def _table(evals: list[dict[str, Any]]) -> None:
    untrusted_table(pd.DataFrame([{
        "id": e["id"], "method": e["method"],
        "prompt": f"v{e['prompt_version']}" if e["prompt_version"] is not None else "",
        "student": e["student"], "split": e["split"], "n": e["n"],
        "macro-F1": score(e["metrics"].get("macro_f1")), "CI": _ci(e["metrics"], "macro_f1"),
        "accuracy": score(e["metrics"].get("accuracy")),
        "top answer share": e["metrics"].get("top_answer_share"),
        "calibrated macro-F1": score(_calibrated(e["metrics"]).get("macro_f1")),
        "calibrated CI": (_ci(_calibrated(e["metrics"]), "macro_f1")
                          if _calibrated(e["metrics"]) else ""),
        "calibrated top share": _calibrated(e["metrics"]).get("top_answer_share"),
        "when": e["created_at"],
    } for e in reversed(evals)]), "evaluations.csv",
        column_config={k: st.column_config.NumberColumn(format="%.3f")
                       for k in ("macro-F1", "accuracy", "calibrated macro-F1")}
        | {k: st.column_config.NumberColumn(format="percent")
           for k in ("top answer share", "calibrated top share")})


def _calibration(m: dict[str, Any]) -> None:
    cal = m.get("calibration")
    if not cal:
        st.caption("Not calibrated (run with a calibration method to see calibrated scores).")
        return
    if cal.get("status") != "fitted":
        say("caption", "Calibration unavailable: " + (cal.get("reason") or ""))
        return
    source = ("from the export's manifest" if cal.get("source")
              else f"{cal.get('method')}, fitted on {cal.get('n_val')} validation items")
    st.markdown("**Calibration bias**")
    st.caption(f"Added to each label's score before the answer is chosen: {source}. "
               "Exported with the prompt as a logit_bias on each label's first token.")
    if cal.get("source"):
        st.text(cal["source"])  # a path the user chose: plain text, never Markdown
    untrusted_table(pd.DataFrame([{"label": k, "bias": score(v)}
                                  for k, v in (cal.get("bias") or {}).items()]),
                    "calibration-bias.csv",
                    column_config={"bias": st.column_config.NumberColumn(format="%+.3f")})
    if cal.get("in_sample"):
        st.warning("The bias was fitted on this split: the calibrated score is optimistic.")


def _rounded(scores: dict[str, Any]) -> dict[str, Any]:
    return {k: score(v) if k in ("precision", "recall", "f1") else v for k, v in scores.items()}


def _share(m: dict[str, Any]) -> str:
    share = m.get("top_answer_share")
    # A label comes from the uploader's file: escaped, shown literally, not as Markdown.
    return "" if share is None else f"{share:.0%} answered {literal(m.get('top_answer'))}"


def _scores(ws: Workspace, ev: dict[str, Any]) -> None:
    m = ev["metrics"]
    cal = _calibrated(m)
    c1, c2, c3, c4 = st.columns(4)
    c1.metric("Macro-F1 (raw)", score_text(m['macro_f1']), help=_ci(m, "macro_f1"))
    c2.metric("Macro-F1 (calibrated)", score_text(cal['macro_f1']) if cal else "—",
              delta=delta_text(cal['macro_f1'] - m['macro_f1']) if cal else None,
              help=_ci(cal, "macro_f1") if cal else "no calibration")
    c3.metric("Accuracy (raw / calibrated)",
              score_text(m['accuracy']) + (f" / {score_text(cal['accuracy'])}" if cal else ""))
    c4.metric("Items", m["n"], help=f"{m.get('n_unparseable', 0)} unparseable answers")
    st.caption(f"Macro-F1 {_ci(m, 'macro_f1')} · accuracy {_ci(m, 'accuracy')} "
               f"(bootstrap over items) · student {literal(ev['student'])} on {ev['split']} · "
               f"most frequent answer: raw {_share(m)}"
               + (f", calibrated {_share(cal)}" if cal else ""))
    if (m.get("top_answer_share") or 0) >= 0.9:
        say("warning", f"The raw student answered {m.get('top_answer')} for "
                       f"{m['top_answer_share']:.0%} of the items: its raw score says little "
                       "about the prompt.")
    _calibration(m)
    views = ["Raw", "Calibrated"] if cal else ["Raw"]
    view = st.radio("Answers", views, horizontal=True, key=f"e_view_{ev['id']}")
    shown = cal if view == "Calibrated" else m
    left, right = st.columns(2)
    with left:
        st.markdown("**Per label**")
        # Stored JSON has its keys sorted; the confusion rows keep the task's label order.
        untrusted_table(pd.DataFrame([{"label": label, **_rounded(shown["per_label"][label])}
                                      for label in shown["confusion"]["rows"]]),
                        f"evaluation-{ev['id']}-per-label.csv",
                        column_config={k: st.column_config.NumberColumn(format="%.3f")
                                       for k in ("precision", "recall", "f1")})
    with right:
        confusion_chart(ev["id"], shown["confusion"], view)
    wrong_items_section(ws, ev, shown["confusion"],
                        CALIBRATED if view == "Calibrated" else RAW)


def _flipped(ws: Workspace, task: str, split: str, ids: list[int], title: str,
             file_name: str) -> None:
    st.markdown(f"**{title}** ({len(ids)})")
    if not ids:
        st.caption("None.")
        return
    wanted = set(ids)
    untrusted_table(pd.DataFrame([{"example": r["id"], "gold": r["label"], "text": r["text"]}
                                  for r in examples(ws, task, split) if r["id"] in wanted]),
                    file_name)


def _compare(ws: Workspace, task: str, evals: list[dict[str, Any]]) -> None:
    if len(evals) < 2:
        st.info("Run at least two evaluations to compare them.")
        return
    by_id = {e["id"]: e for e in evals}
    ids = [e["id"] for e in reversed(evals)]
    pair = evaluate.latest_comparable(ws, task)
    if pair is None:
        st.caption("No two evaluations scored the same split and the same items; the latest "
                   "two are shown.")
    first_a, first_b = pair or (ids[1], ids[0])
    c1, c2 = st.columns(2)
    a = c1.selectbox("A", ids, index=ids.index(first_a), key="e_cmp_a",
                     format_func=lambda i: _name(by_id[i]))
    b = c2.selectbox("B", ids, index=ids.index(first_b), key="e_cmp_b",
                     format_func=lambda i: _name(by_id[i]))
    if a == b:
        st.info("Choose two different evaluations.")
        return
    cmp = evaluate.compare(ws, a, b)
    ea, eb = cmp["a"], cmp["b"]
    if not cmp["comparable"] and cmp["common"]:
        st.warning(f"These evaluations scored different splits or items ({cmp['common']} in "
                   "common): the scores are not directly comparable.")
    if ea["student"] != eb["student"]:
        st.caption("A and B used different students.")
    for col, ev in ((c1, ea), (c2, eb)):
        col.metric("Macro-F1", score_text(ev['metrics']['macro_f1']),
                   help=_ci(ev["metrics"], "macro_f1"))
        col.metric("Accuracy", score_text(ev['metrics']['accuracy']))
        col.caption(f"{ev['method']} · {literal(ev['student'])} · {ev['split']} · n={ev['n']} · "
                    f"{_ci(ev['metrics'], 'macro_f1')}")
    if not cmp["common"]:
        st.warning(f"A ({ea['split']}) and B ({eb['split']}) share no items, so their scores "
                   "have no difference to give: choose two evaluations of the same items.")
    else:
        st.markdown(f"B − A: macro-F1 **{delta_text(cmp['delta_macro_f1'])}**, accuracy "
                    f"**{delta_text(cmp['delta_accuracy'])}** ({cmp['common']} items both "
                    "scored).")
    paired = cmp["paired"]
    if paired is not None and paired["ci"] is not None:
        low, high = paired["ci"]
        verdict = ("more than noise: the interval excludes 0" if paired["beyond_noise"]
                   else "within noise: the interval includes 0")
        st.caption(f"Paired on the same {paired['n']} items: macro-F1 "
                   f"{delta_text(paired['delta'])}, 95% CI {delta_text(low)} to "
                   f"{delta_text(high)} (paired bootstrap), {verdict}. "
                   f"{len(cmp['wrong_to_right'])} item(s) fixed by B, "
                   f"{len(cmp['right_to_wrong'])} broken.")
    left, right = st.columns(2)
    with left:
        _flipped(ws, task, ea["split"], cmp["wrong_to_right"], "Fixed by B (wrong → right)",
                 "fixed-by-b.csv")
    with right:
        _flipped(ws, task, ea["split"], cmp["right_to_wrong"], "Broken by B (right → wrong)",
                 "broken-by-b.csv")
    st.markdown("**Prompt diff (A → B)**")
    if cmp["diff"]:
        st.code(cmp["diff"], language="diff")
    else:
        st.caption("The two prompts are identical.")


def main() -> None:
    """Draw the page."""
    ws, task = page.task_page(
        "Evaluate", "Macro-F1 with a bootstrap 95% CI, per-label scores and the confusion "
        "matrix, raw and calibrated; baselines run on exactly the same items and get the same "
        "calibration.")
    versions = [p.version for p in student.list_prompts(ws, task)]
    evals = evaluate.list_evaluations(ws, task)
    _run_section(ws, task, versions, bool(evals))
    if not evals:
        say("info", f"No evaluation of task {task} yet: run one above.")
        return
    _table(evals)
    t_scores, t_compare = st.tabs(["Scores", "Compare two"])
    with t_scores:
        by_id = {e["id"]: e for e in evals}
        # A finished evaluation is shown as soon as it appears (a choice is kept otherwise).
        page.follow_newest("e_selected", list(by_id), max(by_id), scope=task)
        chosen = st.selectbox("Evaluation", list(reversed(by_id)), key="e_selected",
                              format_func=lambda i: _name(by_id[i]))
        _scores(ws, by_id[chosen])
    with t_compare:
        _compare(ws, task, evals)


main()
