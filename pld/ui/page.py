"""What every page does first (login, sidebar, the chosen task, the last action's message, shown
literally) and the widget helpers that keep keyed inputs in step with the workspace.

A page runs inside ``app.py`` (which draws the sidebar once, before ``st.navigation`` runs the
page) or on its own (``AppTest.from_file("pages/x.py")``, ``streamlit run pages/x.py``).
:func:`setup` draws the sidebar only in the second case: ``app.py`` marks the session with
:data:`SIDEBAR_FLAG` through :func:`render_sidebar`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import streamlit as st

from pld.ui import sidebar
from pld.ui.escape import say
from pld.workspace import Workspace

SIDEBAR_FLAG = "_pld_sidebar_rendered"
FLASH_KEY = "_pld_flash"


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


def task_page(title: str, caption: str | None = None) -> tuple[Workspace, str]:
    """Start a page about the sidebar's task: its title, the sidebar, ``caption`` and the
    message the last action left. Without a workspace or a task the page says what to do and
    the script stops here."""
    st.title(title)
    ws, task = setup()
    if ws is None or not need_task(task):
        st.stop()
    assert ws is not None and task is not None
    if caption:
        st.caption(caption)
    show_flash()
    return ws, task


def flash(kind: str, message: str) -> None:
    """Keep a message for the next run of the page (``kind``: success, info, warning, error).

    ``message`` is plain text, not Markdown: it is shown literally (:func:`pld.ui.escape.say`),
    so a name or a refusal quoted in it needs no escaping. Actions run in button callbacks,
    before the page is drawn; the page shows the message with :func:`show_flash` where it
    starts.
    """
    st.session_state[FLASH_KEY] = (kind, message)


def show_flash() -> None:
    """Show (once) the message left by :func:`flash`."""
    kind, message = st.session_state.pop(FLASH_KEY, (None, None))
    if kind in ("success", "info", "warning", "error"):
        say(kind, message)


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
    whenever ``value`` changed since the last call, e.g. a name someone else saved meanwhile,
    and whenever the input opens again; what the reviewer types in between is kept.

    Otherwise the input would keep showing (and resubmit) the old value it was first drawn with,
    or open empty: Streamlit forgets the value of an input a run did not draw (another page,
    another cluster chosen), while the marker of the value seen stays.
    """
    seen_key = f"_pld_value_{key}"
    if (key not in st.session_state or seen_key not in st.session_state
            or st.session_state[seen_key] != value):
        st.session_state[key] = value
        st.session_state[seen_key] = value
