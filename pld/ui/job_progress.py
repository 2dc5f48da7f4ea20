"""A background job's progress on its page: a live bar per running job with Cancel, its
provider batches, then how the last job ended and the recent runs.

Everything comes from the workspace and the ``jobs/`` folder (:mod:`pld.jobs`), so closing and
reopening the page, or a second tab, shows the same.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pandas as pd
import streamlit as st

from pld import jobs
from pld.pipeline.runs import DONE, FAILED, INTERRUPTED
from pld.ui import sidebar
from pld.ui.escape import literal
from pld.ui.page import flash
from pld.ui.tables import untrusted_table
from pld.workspace import Workspace

POLL_S = 2.0


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


def _cancel(ws: Workspace, entry: dict[str, object]) -> None:
    try:
        status = jobs.cancel(ws, entry, who=sidebar.identity())
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
                _batch_progress(ws, int(entry["run_id"]))
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
                with st.expander(f"Its log ({literal(last[0].describe())})",
                                 expanded=reason is None):
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
                untrusted_table(pd.DataFrame([{
                    "run": r["id"], "status": r["status"], "done": r["done"], "total": r["total"],
                    "started": r["started_at"], "finished": r["finished_at"],
                    "error": r["error"] or "",
                } for r in runs]), f"{kind}-runs.csv")

    _panel()


def _batch_progress(ws: Workspace, run_id: int) -> None:
    """Each provider batch of a running job: submitted, done and failed requests."""
    from pld.llm.batch_store import list_batches, progress_row

    rows = list_batches(ws, run_id=run_id)
    if rows:
        untrusted_table(pd.DataFrame([progress_row(r) for r in rows]),
                        f"run-{run_id}-batches.csv")
