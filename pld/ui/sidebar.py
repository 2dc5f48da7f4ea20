"""The sidebar every page shares: workspace file, reviewer identity and model strings."""

from __future__ import annotations

import os
from pathlib import Path

import streamlit as st

from pld.llm.base import ConfigError
from pld.llm.registry import DEFAULT_MODEL, parse_model
from pld.workspace import Workspace, WorkspaceError, default_path, open_workspace


@st.cache_resource(show_spinner=False)
def _open(path: str) -> Workspace:
    # One handle per file per server process: the connection is thread-safe (see Workspace).
    return open_workspace(path)


def workspace() -> Workspace | None:
    """The workspace chosen in the sidebar, or None (with an error shown) if it cannot open."""
    path = st.session_state.get("ws_path") or str(default_path())
    try:
        return _open(path)
    except WorkspaceError as e:
        st.error(str(e))
        return None


def reviewer() -> str:
    """The reviewer's name as typed in the sidebar ('' when none)."""
    return (st.session_state.get("reviewer") or "").strip()


def model(role: str) -> str:
    """The model string for ``role`` ('teacher' or 'student')."""
    return st.session_state.get(f"{role}_model") or DEFAULT_MODEL


def render() -> None:
    """Draw the sidebar controls."""
    with st.sidebar:
        st.text_input("Workspace file", value=str(default_path()), key="ws_path",
                      help="One SQLite file holds everything; $PLD_WORKSPACE sets the default.")
        st.text_input("Reviewer name", key="reviewer",
                      help="Recorded with every edit and approval (self-declared identity).")
        for role in ("teacher", "student"):
            st.text_input(f"{role.title()} model", value=os.environ.get(
                f"PLD_{role.upper()}", DEFAULT_MODEL), key=f"{role}_model")
            try:
                parse_model(model(role))
            except ConfigError as e:
                st.error(str(e))
        st.caption(f"Workspace: `{Path(st.session_state.get('ws_path') or default_path())}`")
