"""What every page does first, and the background-job panel the stage pages share.

A page runs inside ``app.py`` (which draws the sidebar once, before ``st.navigation`` runs the
page) or on its own (``AppTest.from_file("pages/x.py")``, ``streamlit run pages/x.py``).
:func:`setup` draws the sidebar only in the second case: ``app.py`` marks the session with
:data:`SIDEBAR_FLAG` through :func:`render_sidebar`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import streamlit as st

from pld import jobs, review
from pld.pipeline.runs import DONE, FAILED, INTERRUPTED
from pld.ui import sidebar
from pld.workspace import Workspace

SIDEBAR_FLAG = "_pld_sidebar_rendered"
FLASH_KEY = "_pld_flash"
POLL_S = 2.0


def require_login() -> None:
    """With ``[auth]`` configured, show only a login prompt (and stop the script) until the
    visitor is identified: a visitor who is not logged in can read and change nothing."""
    if not sidebar.auth_configured() or sidebar.identity() is not None:
        return
    if getattr(st.user, "is_logged_in", False):
        st.error("Your login does not say who you are (no issuer and subject claims); ask "
                 "whoever runs this app to check the identity provider.")
        st.button("Log out", key="_pld_gate_logout", on_click=st.logout)
    else:
        st.info("This PLD Studio is shared by a team: log in to see or change anything.")
        st.button("Log in", key="_pld_gate_login", type="primary", on_click=st.login)
    st.stop()


def render_sidebar() -> None:
    """Draw the sidebar and mark the session so pages do not draw it again (for ``app.py``)."""
    require_login()
    sidebar.render()
    st.session_state[SIDEBAR_FLAG] = True


def setup() -> tuple[Workspace | None, str | None]:
    """Draw the sidebar unless ``app.py`` did; return the workspace and the selected task.

    The workspace is None when its file cannot be opened (the sidebar shows why).
    """
    require_login()
    if not st.session_state.get(SIDEBAR_FLAG):
        sidebar.render()
    return sidebar.workspace(), sidebar.task()


def need_task(task: str | None) -> bool:
    """Say what to do when no task is loaded; True when there is a task to show."""
    if task:
        return True
    st.info("No task is loaded in this workspace yet. Load the demo, a built-in task or your "
            "own CSV/JSONL file on the **Data** page, then come back.")
    return False


def flash(kind: str, message: str) -> None:
    """Keep a message for the next run of the page (``kind``: success, info, warning, error).

    Actions run in button callbacks, before the page is drawn; the page shows the message with
    :func:`show_flash` where it starts.
    """
    st.session_state[FLASH_KEY] = (kind, message)


def show_flash() -> None:
    """Show (once) the message left by :func:`flash`."""
    kind, message = st.session_state.pop(FLASH_KEY, (None, None))
    if kind in ("success", "info", "warning", "error"):
        getattr(st, kind)(message)


def follow_newest(key: str, options: Sequence[Any], newest: Any, scope: str = "") -> None:
    """Call before drawing the keyed selectbox ``key``: move its value to ``newest`` when a
    newer option appeared (in ``scope``, e.g. the task) or its value is no longer an option;
    otherwise keep the reviewer's own choice.

    A keyed widget keeps its stored value and ignores ``index=``, so without this it would stay
    on whatever was newest when the page was first drawn. Draw the widget without ``index=``.
    """
    seen_key, marker = f"_pld_newest_{key}", (scope, newest)
    if st.session_state.get(seen_key) != marker or st.session_state.get(key) not in options:
        st.session_state[key] = newest
        st.session_state[seen_key] = marker


def labelled_selectbox(label: str, options: Sequence[Any], *, key: str,
                       format_func: Callable[[Any], str], where: Any = None,
                       **kwargs: Any) -> Any:
    """``st.selectbox`` (in ``where``, a column or container; the page by default) whose shown
    choice follows its label: when the chosen option's label changed since the last run (a
    heuristic approved, a cluster renamed), the choice is sent to the browser again.

    The browser shows the label it was last sent for the chosen option; without this it keeps
    showing e.g. "draft" for a heuristic approved a moment ago (the options list is fresh, the
    shown choice is not).
    """
    seen_key = f"_pld_label_{key}"
    if key in st.session_state and seen_key in st.session_state:
        try:
            now_label = format_func(st.session_state[key])
        except (KeyError, IndexError, TypeError, ValueError):
            now_label = None  # no longer an option: the widget resets it itself
        if now_label is not None and now_label != st.session_state[seen_key]:
            # Assigning marks the value changed, so the widget sends it (and its label) anew.
            st.session_state[key] = st.session_state[key]
    value = (where or st).selectbox(label, options, key=key, format_func=format_func, **kwargs)
    # Recorded after drawing: a choice left at its default is in session state only now.
    st.session_state[seen_key] = None if value is None else format_func(value)
    return value


def follow_value(key: str, value: Any) -> None:
    """Call before drawing the keyed input ``key`` (without ``value=``): set it to ``value``
    whenever ``value`` changed since the last call, e.g. a name someone else saved meanwhile.

    Otherwise the input would keep showing (and resubmit) the old value it was first drawn with.
    """
    seen_key = f"_pld_value_{key}"
    if seen_key not in st.session_state or st.session_state[seen_key] != value:
        st.session_state[key] = value
        st.session_state[seen_key] = value


def is_busy(ws: Workspace, task: str, kind: str) -> bool:
    """True while a ``kind`` job runs for ``task`` (from the workspace: right in every tab)."""
    return bool(jobs.active_jobs(ws, task, kind))


def progress_label(entry: dict[str, Any], now: datetime | None = None) -> str:
    """What a job is doing, in words: starting (loading the model and the data), preparing, or
    n of N with the rate and the time left at that rate since its run started."""
    pid = f"pid {entry['pid']}"
    if not entry.get("stage"):
        return f"{entry['kind']}: starting (loading the model and the data) · {pid}"
    done, total = int(entry.get("done") or 0), int(entry.get("total") or 0)
    if not total:
        return f"{entry['kind']} ({entry['stage']}): preparing · {pid}"
    label = f"{entry['kind']} ({entry['stage']}): {done} of {total}"
    started = entry.get("run_started_at")
    if done and started:
        elapsed = ((now or datetime.now(UTC)) - datetime.fromisoformat(str(started)))
        seconds = max(elapsed.total_seconds(), 1e-9)
        rate = done / seconds * 60
        left = (total - done) / (done / seconds)
        label += f" · {rate:.1f}/min · about {_duration(left)} left"
    return f"{label} · {pid}"


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def acting() -> dict[str, str]:
    """``who`` and ``identity_kind`` of the signed-in reviewer, for the calls that record who
    acted (starting and cancelling jobs, exports); empty when nobody is identified."""
    me = sidebar.identity()
    return {"who": me.name, "identity_kind": me.kind} if me is not None else {}


def record(ws: Workspace, entity: str, action: str, details: dict[str, Any]) -> None:
    """Audit something the signed-in reviewer did that is not a review (loading data)."""
    me = sidebar.identity()
    review.record_action(ws, me.name if me else None, me.kind if me else review.SELF_DECLARED,
                         entity, action, details)


def _cancel(ws: Workspace, entry: dict[str, object]) -> None:
    try:
        status = jobs.cancel(ws, entry, **acting())
    except Exception as e:  # shown to the user; the page must keep working
        flash("error", f"Could not cancel pid {entry['pid']}: {e}")
    else:
        flash("warning", f"Cancelled {entry['kind']} (pid {entry['pid']}): the run is {status}; "
                         "start it again to resume where it stopped.")


def jobs_panel(ws: Workspace, task: str, kind: str) -> None:
    """Live progress of ``kind`` jobs of ``task`` with a Cancel button, then the last outcome.

    Polls every :data:`POLL_S` seconds while something runs (an ``st.fragment``); everything
    comes from the workspace and the ``jobs/`` folder, so closing and reopening the page or a
    second tab shows the same. When the job ends the whole page reruns to show its results.

    Draw it outside any expander that may be collapsed: a reviewer who reopens the page while
    a job runs must see its progress without looking for it.
    """
    running = jobs.active_jobs(ws, task, kind)

    @st.fragment(run_every=POLL_S if running else None, key=f"_pld_jobs_{kind}")
    def _panel() -> None:
        active = jobs.active_jobs(ws, task, kind)
        seen_key = f"_pld_jobs_active_{kind}"
        was_running = st.session_state.get(seen_key, False)
        st.session_state[seen_key] = bool(active)
        if was_running and not active:
            st.rerun()  # the job ended: redraw the page with its results
        for entry in active:
            total = int(entry["total"] or 0)
            st.progress(min(1.0, int(entry["done"] or 0) / total) if total else 0.0,
                        text=progress_label(entry))
            if entry.get("run_id"):
                batch_progress(ws, int(entry["run_id"]))
            left, right = st.columns(2)
            left.button("Cancel", key=f"_pld_cancel_{kind}_{entry['pid']}", on_click=_cancel,
                        args=(ws, entry), help="Stops the process; its finished work is kept.")
            done = int(entry["done"] or 0)
            # Only the panel polls (a whole-page rerun every few seconds would disturb a
            # reviewer reading the tables); this redraws the page with what is written so far.
            if done and right.button(f"Show the {done} done so far",
                                     key=f"_pld_refresh_{kind}_{entry['pid']}",
                                     help="Redraw the page's tables with the job's results "
                                          "written to the workspace until now."):
                st.rerun(scope="app")
        if active:
            return
        last = jobs.list_jobs(ws, task, kind, limit=1)
        if last:
            status = jobs.job_status(ws, last[0])
            if status == FAILED:
                reason = jobs.job_error(last[0])
                st.error(f"The last {kind} job failed" + (":" if reason else "."))
                if reason:
                    # Plain text, never Markdown: it can quote model output or a file's lines.
                    st.text(reason)
                with st.expander(f"Its log ({last[0].describe()})", expanded=reason is None):
                    st.code(jobs.job_log(last[0]) or "(empty log)", language=None)
            elif status == INTERRUPTED:
                st.warning(f"The last {kind} job was interrupted; start it again to resume.")
            elif status == DONE:
                # Here, not as a message at the top of the page: an element added above the
                # page's expanders would shift them and close the one the reviewer opened.
                st.caption(f"The last {kind} job finished; its results are on this page.")
        runs = jobs.recent_runs(ws, task, kind, limit=5)
        if runs:
            with st.expander(f"Recent {kind} runs"):
                st.dataframe(pd.DataFrame([{
                    "run": r["id"], "status": r["status"], "done": r["done"], "total": r["total"],
                    "started": r["started_at"], "finished": r["finished_at"],
                    "error": r["error"] or "",
                } for r in runs]), hide_index=True)

    _panel()


def estimate_words(d: dict[str, Any]) -> str:
    """An estimate (:func:`pld.jobs.estimate`) in one line."""
    price = (f"${d['usd']:.4f} at list price (${d['batch_usd']:.4f} through a batch API)"
             if not d["unpriced"] else "no price known for " + ", ".join(d["unpriced"]))
    return (f"Estimate: {d['calls']:,} calls ({d['cached']:,} already cached, free), "
            f"~{d['input_tokens']:,} input and ~{d['output_tokens']:,} output tokens, {price}.")


def estimate_button(ws: Workspace, args: list[str], key: str) -> None:
    """"Estimate the cost" beside a Start button: what ``python -m pld ARGS`` would spend,
    computed on click (it renders every prompt the job would send, which takes a while on a
    large task) and shown until the settings change."""
    shown_key = f"_pld_estimate_{key}"
    if st.button("Estimate the cost", key=key,
                 help="Calls nothing: counts the calls, tokens and dollars of these settings "
                      "(python -m pld … --estimate-only)."):
        try:
            st.session_state[shown_key] = (args, estimate_words(jobs.estimate(ws, args)))
        except Exception as e:  # shown to the user; the page must keep working
            st.session_state[shown_key] = (args, f"No estimate: {e}")
    shown = st.session_state.get(shown_key)
    if shown and shown[0] == args:
        st.text(shown[1])  # may quote a model string: plain text


def batch_checkbox(key: str, models: list[str]) -> None:
    """"Use the provider's batch API" (``--batch``) for a job whose calls go to ``models``;
    disabled, with the reason, when one of them has no batch API (local models)."""
    from pld.llm import batch

    problem = next((m for m in models if not batch.batchable(m)), None)
    if problem is not None:
        st.session_state[key] = False
    st.checkbox(
        "Use the provider's batch API (half price, answers within 24 h)", key=key,
        disabled=problem is not None,
        help=(f"{problem} has no batch API: local models run here." if problem is not None
              else "Sends the uncached calls as provider batches (python -m pld … --batch). "
                   "Their progress shows below while the job runs; cancelling the job cancels "
                   "them, and starting it again picks up the same batches."))


def batch_progress(ws: Workspace, run_id: int) -> None:
    """Each provider batch of a running job: submitted, done and failed requests."""
    from pld.llm import batch

    rows = batch.list_batches(ws, run_id=run_id)
    if rows:
        st.dataframe(pd.DataFrame([batch.progress_row(r) for r in rows]), hide_index=True)


def running_caption(ws: Workspace, task: str, kind: str) -> str | None:
    """A reason to show next to a disabled Start button, or None when nothing runs."""
    active = jobs.active_jobs(ws, task, kind)
    if not active:
        return None
    return f"A {kind} job is running for {task} (pid {active[0]['pid']}); wait or cancel it."

