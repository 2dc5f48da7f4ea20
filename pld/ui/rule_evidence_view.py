"""A rule's examples and evidence on the Micro-instructions page: the source example beside the
contrast example it was written against, what the rule did alone in the student's prompt
(:mod:`pld.pipeline.rule_evidence`), why it is flagged as a restatement, and the job that
verifies the task's rules. Every text from the data or a model is shown plain, never Markdown.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from pld.pipeline.rule_evidence import DEFAULT_NEIGHBOURS, MOVED
from pld.ui import sidebar
from pld.ui.escape import literal, say
from pld.ui.launcher import Launch, job_section, start_controls
from pld.ui.tables import untrusted_table
from pld.workspace import Workspace


def verify_section(ws: Workspace, task: str, n_verified: int) -> None:
    """"Verify the rules with the student": the ``rules verify`` job and its progress."""
    student = sidebar.model("student")
    with job_section(ws, task, "verify", "Verify the rules with the student",
                     expanded=False):
        st.write(f"The student {literal(student)} answers each rule's source example, its "
                 f"contrast example and its {DEFAULT_NEIGHBOURS} nearest training examples "
                 "with that rule alone in its prompt, and once without any rule. A rule's "
                 "*effect* is how far it moved the gold label's calibrated probability (zero-"
                 "shot calibration, fitted on validation): positive toward the right answer. "
                 "Rules already verified with this student are skipped.")
        st.caption(f"{n_verified} rules of this task have evidence so far.")
        start_controls(ws, task, Launch(
            "verify", "Verify the rules", key="x_verify", prefix="x_verify",
            started="Verifying the rules",
            command=lambda: ["rules", "verify", task, "--student", student],
            models=(student,),
            help="Runs `python -m pld rules verify` in the background (cached calls are "
                 "free)."))


def example_pair(rule: dict[str, Any]) -> None:
    """The rule's source example and, beside it, the contrast example it was written against
    (the source alone for a rule written from one example)."""
    shown = [("Source example", rule["example"]),
             *(("Contrast example", c) for c in rule["contrast"])]
    for column, (title, example) in zip(st.columns(len(shown)), shown, strict=True):
        with column:
            st.markdown(f"**{title}** ({literal(example['split'])} · "
                        f"{literal(example['ext_id'])} · gold **{literal(example['label'])}**)")
            st.text(example["text"])
    if not rule["contrast"] and rule["status"] == "ok":
        st.caption("Written from this example alone (no contrasting example).")


def restatement_note(rule: dict[str, Any]) -> None:
    """Why the rule is flagged as a restatement of the task, when it is."""
    if rule.get("restatement"):
        say("warning", "Restates the task: " + rule["restatement"] + ". It will not become a "
            "heuristic on its own.")


def evidence_panel(rule: dict[str, Any]) -> None:
    """What the rule did alone in each student's prompt, item by item."""
    st.markdown("**Evidence from the student**")
    if not rule["evidence"]:
        st.caption("Not verified yet: use \"Verify the rules with the student\" above.")
        return
    for n, e in enumerate(rule["evidence"]):
        if e["effect"] is None:
            say("caption", f"{e['student']}: no evidence, {e['reason']}")
            continue
        say("caption", f"{e['student']}: effect {e['effect']:+.3f} on {e['n']} items; "
            f"{e['helped']} moved toward the gold label and {e['hurt']} away by {MOVED} or "
            f"more (verified {e['created_at'][:16]})")
        untrusted_table(pd.DataFrame([{
            "example": i["example_id"], "role": i["role"], "gold": i["gold"],
            "P(gold) zero-shot": i["zero_shot"], "P(gold) with the rule": i["with_rule"],
            "change": round(i["with_rule"] - i["zero_shot"], 4),
            "answer zero-shot": i["answer_zero_shot"], "answer with the rule":
                i["answer_with_rule"]} for i in e["items"]]),
            f"rule-{e['rule_id']}-evidence-{n + 1}.csv", key=f"x_evidence_{e['rule_id']}_{n}")
