"""Starting a stage's background job from its page, the same way on every page.

A page describes its job as a :class:`Launch` (the ``python -m pld`` command its settings stand
for, the models it calls) and draws, inside :func:`job_section`, its own settings and then
:func:`start_controls`: "ask the failed ones again", the provider batch choice, Start and
"Estimate the cost". The job's live progress follows the section, outside it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import streamlit as st

from pld import jobs
from pld.errors import BadInput
from pld.llm.base import ConfigError
from pld.llm.registry import parse_model
from pld.ui import sidebar
from pld.ui.escape import say, tip
from pld.ui.job_progress import jobs_panel
from pld.ui.page import flash
from pld.workspace import Workspace


@dataclass(frozen=True)
class Launch:
    """One page's background job.

    ``command`` gives the command the page's settings stand for, read from session state when
    called (a click applies the settings changed with it before the job starts). The launcher
    adds ``--retry-failed`` and ``--batch`` from its own widgets; the job acts as the signed-in
    reviewer (see :func:`pld.jobs.start`), and what it writes counts as theirs.
    """

    kind: str                                # the job's kind, as its runs record it
    label: str                               # the Start button
    key: str                                 # the Start button's key
    prefix: str                              # the launcher's widget keys: PREFIX_batch, ...
    started: str                             # says it started: "Extraction started"
    command: Callable[[], list[str]]
    models: tuple[str, ...] = ()             # what its calls go to: each must parse
    priced: bool = False                     # takes --batch and --estimate-only
    retry: str | None = None                 # label of "ask the failed ones again"
    help: str | None = None


@contextmanager
def job_section(ws: Workspace, task: str, kind: str, title: str,
                expanded: bool) -> Iterator[None]:
    """An expander holding a job's settings and Start, then the ``kind`` jobs' progress.

    The progress is drawn outside the expander: it is collapsed once the stage has results,
    and a reviewer who reopens the page while a job runs must see it without looking for it.
    """
    with st.expander(title, expanded=expanded):
        yield
    jobs_panel(ws, task, kind)


def start_controls(ws: Workspace, task: str, launch: Launch,
                   problem: str | None = None) -> None:
    """The launcher's widgets under the page's settings; Start is off while a ``kind`` job
    runs for ``task`` (the progress says so), a model does not parse, or ``problem`` (shown
    under it) says why not."""
    if launch.retry:
        st.checkbox(launch.retry, key=f"{launch.prefix}_retry_failed",
                    help="A fresh call for each one whose reply was not usable.")
    if launch.priced:
        _batch_checkbox(f"{launch.prefix}_batch", launch.models)
    problem = problem or _model_problem(launch.models)
    running = bool(jobs.active_jobs(ws, task, launch.kind))
    left, right = st.columns(2)
    left.button(launch.label, key=launch.key, type="primary", disabled=running or bool(problem),
                on_click=_start, args=(ws, launch), help=launch.help)
    if launch.priced:
        with right:
            _estimate_button(ws, command(launch), f"{launch.prefix}_estimate")
    if problem:
        say("caption", problem)  # may quote a model string or the task


def command(launch: Launch) -> list[str]:
    """The command Start runs, as the settings stand now."""
    args = [*launch.command()]
    if launch.retry and st.session_state.get(f"{launch.prefix}_retry_failed"):
        args.append("--retry-failed")
    if launch.priced and st.session_state.get(f"{launch.prefix}_batch"):
        args.append("--batch")
    return args


def _model_problem(models: tuple[str, ...]) -> str | None:
    for model in models:
        try:
            parse_model(model)
        except ConfigError as e:
            return f"Model {model}: {e}"
    return None


def _start(ws: Workspace, launch: Launch) -> None:
    try:
        # The job acts as the reviewer: what it writes is theirs, so someone else approves it.
        job = jobs.start(ws, command(launch), who=sidebar.identity())
    except (BadInput, OSError) as e:
        flash("error", f"Could not start the {launch.kind} job: {e}")
    else:
        flash("success", f"{launch.started} in the background ({job.describe()}).")


def _estimate_words(d: dict[str, Any]) -> str:
    price = (f"${d['usd']:.4f} at list price (${d['batch_usd']:.4f} through a batch API)"
             if not d["unpriced"] else "no price known for " + ", ".join(d["unpriced"]))
    return (f"Estimate: {d['calls']:,} calls ({d['cached']:,} already cached, free), "
            f"~{d['input_tokens']:,} input and ~{d['output_tokens']:,} output tokens, {price}.")


def _estimate_button(ws: Workspace, args: list[str], key: str) -> None:
    """"Estimate the cost" beside Start: what ``python -m pld ARGS`` would spend, computed on
    click (it renders every prompt the job would send, which takes a while on a large task)
    and shown until the settings change."""
    shown_key = f"_pld_estimate_{key}"
    if st.button("Estimate the cost", key=key,
                 help="Calls nothing: counts the calls, tokens and dollars of these settings "
                      "(python -m pld … --estimate-only)."):
        try:
            st.session_state[shown_key] = (args, _estimate_words(jobs.estimate(ws, args)))
        except Exception as e:  # shown to the user; the page must keep working
            st.session_state[shown_key] = (args, f"No estimate: {e}")
    shown = st.session_state.get(shown_key)
    if shown and shown[0] == args:
        st.text(shown[1])  # may quote a model string: plain text


def _batch_checkbox(key: str, models: tuple[str, ...]) -> None:
    """"Use the provider's batch API" (``--batch``) for a job whose calls go to ``models``;
    disabled, with the reason, when one of them has no batch API (local models)."""
    from pld.llm import batch

    problem = next((m for m in models if not batch.batchable(m)), None)
    if problem is not None:
        st.session_state[key] = False
    st.checkbox(
        "Use the provider's batch API (half price, answers within 24 h)", key=key,
        disabled=problem is not None,
        help=(tip(f"{problem} has no batch API: local models run here.") if problem is not None
              else "Sends the uncached calls as provider batches (python -m pld … --batch). "
                   "Their progress shows below while the job runs; cancelling the job cancels "
                   "them, and starting it again picks up the same batches."))
