"""Acting as the signed-in reviewer: running a page's action under their identity, and what a
page says while nobody is identified.

Every change a page makes goes through :func:`act` (review actions) or :func:`reviewer_kwargs`
(jobs, prompt builds, exports), so it is recorded under the sidebar's identity and refused,
with one message, when there is none.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import streamlit as st

from pld import review, review_rows, signoff
from pld.errors import BadInput
from pld.ui import sidebar
from pld.ui.escape import literal
from pld.ui.page import flash, task_page
from pld.workspace import Workspace

SIGN_IN = "Enter your name in the sidebar (or log in)"
NOBODY = f"Nobody is identified: {SIGN_IN[0].lower()}{SIGN_IN[1:]}"


def act(what: str, action: Callable[[sidebar.Identity], str],
        refused: Callable[[BadInput], str] | None = None) -> bool:
    """Run ``action`` as the signed-in reviewer and leave its outcome as a flash message.

    ``action`` makes its ``pld`` calls as the identity it is given and returns the message that
    says what it did; a :class:`BadInput` it raises is the refusal, worded by ``refused``
    (by default "Cannot WHAT: reason", and a stale edit as a warning). With nobody identified
    nothing runs. True when the action was done.
    """
    who = sidebar.identity()
    if who is None:
        flash("error", f"Cannot {what}: {NOBODY} first.")
        return False
    try:
        message = action(who)
    except BadInput as e:
        if refused is not None:
            flash("error", refused(e))
        elif isinstance(e, review_rows.StaleEdit):
            flash("warning", f"Not saved, someone changed it first: {literal(e)}")
        else:
            flash("error", f"Cannot {what}: {literal(e)}")
        return False
    flash("success", message)
    return True


def review_page(title: str, caption: str,
                purpose: str) -> tuple[Workspace, str, sidebar.Identity | None]:
    """Start a page where reviewers sign (:func:`pld.ui.page.task_page`): the workspace, the
    task and the signed-in reviewer, with a warning while nobody is (see
    :func:`reviewer_or_warning`)."""
    ws, task = task_page(title, caption)
    return ws, task, reviewer_or_warning(purpose)


def reviewer_or_warning(purpose: str) -> sidebar.Identity | None:
    """The signed-in reviewer; while nobody is, a warning says that ``purpose`` (e.g. "accept
    or reject proposals") needs a name first."""
    me = sidebar.identity()
    if me is None:
        st.warning(f"{NOBODY} to {purpose}: every change is recorded under that name.")
    return me


def reviewer_kwargs() -> dict[str, str]:
    """``who`` and ``identity_kind`` of the signed-in reviewer, for the calls that record who
    acted (starting and cancelling jobs, building prompts, exports); empty when nobody is
    identified."""
    me = sidebar.identity()
    return {"who": me.name, "identity_kind": me.kind} if me is not None else {}


def record(ws: Workspace, entity: str, action: str, details: dict[str, Any]) -> None:
    """Audit something the signed-in reviewer did that is not a review (loading data)."""
    me = sidebar.identity()
    review.record_action(ws, me.name if me else None, me.kind if me else signoff.SELF_DECLARED,
                         entity, action, details)
