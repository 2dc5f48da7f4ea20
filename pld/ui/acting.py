"""Acting as the signed-in reviewer: running a page's action under their identity, and what a
page says while nobody is identified.

Every review action a page makes goes through :func:`act`, so it is done as the sidebar's
identity and refused, with one message, when there is none; jobs, prompt builds and exports
pass :func:`pld.ui.sidebar.identity` (``pld:anonymous`` in the trail when nobody is
identified, possible only without login).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import streamlit as st

from pld import review, review_rows
from pld.errors import BadInput
from pld.identity import Identity
from pld.ui import sidebar
from pld.ui.page import flash, task_page
from pld.workspace import Workspace

SIGN_IN = "Enter your name in the sidebar (or log in)"
NOBODY = f"Nobody is identified: {SIGN_IN[0].lower()}{SIGN_IN[1:]}"


def act(what: str, action: Callable[[Identity], str],
        refused: Callable[[BadInput], str | None] | None = None) -> bool:
    """Run ``action`` as the signed-in reviewer and leave its outcome as a flash message.

    ``action`` makes its ``pld`` calls as the identity it is given and returns the message that
    says what it did; a :class:`BadInput` it raises is the refusal, worded by ``refused``
    (by default "Cannot WHAT: reason", and a stale edit as a warning; None from ``refused``:
    the page shows that refusal itself). Messages are plain text
    (:func:`pld.ui.page.flash` shows them literally). With nobody identified nothing runs.
    True when the action was done.
    """
    who = sidebar.identity()
    if who is None:
        flash("error", f"Cannot {what}: {NOBODY} first.")
        return False
    try:
        message = action(who)
    except BadInput as e:
        if refused is not None:
            why = refused(e)
            if why is not None:
                flash("error", why)
        elif isinstance(e, review_rows.StaleEdit):
            flash("warning", f"Not saved, someone changed it first: {e}")
        else:
            flash("error", f"Cannot {what}: {e}")
        return False
    flash("success", message)
    return True


def review_page(title: str, caption: str,
                purpose: str) -> tuple[Workspace, str, Identity | None]:
    """Start a page where reviewers sign (:func:`pld.ui.page.task_page`): the workspace, the
    task and the signed-in reviewer, with a warning while nobody is (see
    :func:`reviewer_or_warning`)."""
    ws, task = task_page(title, caption)
    return ws, task, reviewer_or_warning(purpose)


def reviewer_or_warning(purpose: str) -> Identity | None:
    """The signed-in reviewer; while nobody is, a warning says that ``purpose`` (e.g. "accept
    or reject proposals") needs a name first."""
    me = sidebar.identity()
    if me is None:
        st.warning(f"{NOBODY} to {purpose}: every change is recorded under that name.")
    return me


def record(ws: Workspace, entity: str, action: str, details: dict[str, Any]) -> None:
    """Audit something the signed-in reviewer did that is not a review (loading data)."""
    review.record_action(ws, sidebar.identity(), entity, action, details)
