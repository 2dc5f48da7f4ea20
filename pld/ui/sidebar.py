"""The sidebar every page shares: workspace file, task, reviewer identity and model strings."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import streamlit as st

from pld.errors import BadInput
from pld.identity import OIDC, Identity
from pld.llm.base import ConfigError
from pld.llm.registry import DEFAULT_MODEL, parse_model
from pld.served_paths import confine
from pld.tasks.store import loaded_tasks
from pld.ui.escape import literal
from pld.workspace import Workspace, WorkspaceError, default_path, open_workspace

CREATE_OK_KEY = "_pld_ws_create_ok"


@st.cache_resource(show_spinner=False)
def _open(path: str) -> Workspace:
    # One handle per file per server process: the connection is thread-safe (see Workspace).
    return open_workspace(path)


def workspace_path() -> Path:
    """The workspace file chosen in the sidebar."""
    return Path(st.session_state.get("ws_path") or default_path())


def may_open(path: Path) -> bool:
    """True when ``path`` may be opened: it exists, is the default, or the user chose to create it.

    A mistyped path must not quietly start an empty workspace beside the real one.
    """
    return (path.exists() or path == default_path()
            or str(path) in st.session_state.get(CREATE_OK_KEY, ()))


def _allow_create(path: str) -> None:
    st.session_state[CREATE_OK_KEY] = [*st.session_state.get(CREATE_OK_KEY, ()), path]


def workspace() -> Workspace | None:
    """The workspace chosen in the sidebar, or None (the sidebar says why) if it cannot open:
    refused outside ``$PLD_ROOT`` when the app serves a team."""
    try:
        path = confine(workspace_path(), "the workspace file")
    except BadInput as e:
        st.error(str(e))
        return None
    if not may_open(workspace_path()):
        return None
    try:
        return _open(str(path))
    except WorkspaceError as e:
        st.error(str(e))
        return None


def auth_configured() -> bool:
    """True when ``[auth]`` is set in .streamlit/secrets.toml, so reviewers log in with OIDC."""
    try:
        return "auth" in st.secrets
    except Exception:  # no secrets file at all
        return False


def oidc_identity(claims: Mapping[str, Any]) -> Identity | None:
    """The reviewer an OIDC login names, keyed by the provider's issuer and subject: the email
    only where the provider verified it, else ``<sub>@<issuer host>``. A display name or an
    unverified email is never used (anyone can set theirs to "alice"); a login without issuer
    and subject, or with a name no person may act under, names nobody."""
    sub, iss = str(claims.get("sub") or ""), str(claims.get("iss") or "")
    if not sub or not iss:
        return None
    email = str(claims.get("email") or "")
    name = email if email and claims.get("email_verified") is True else \
        f"{sub}@{urlsplit(iss).netloc or iss}"
    try:
        return Identity(name, OIDC)
    except BadInput:
        return None


def _typed_identity() -> Identity | None:
    """The name typed in the sidebar as a self-declared identity; None when none is typed.
    :class:`BadInput` says why a typed name cannot act."""
    name = st.session_state.get("reviewer") or ""
    return Identity(name) if name.strip() else None


def identity() -> Identity | None:
    """The acting reviewer: the OIDC user when login is configured, else the typed name
    (self-declared); None when nobody is identified, or the typed name may not act (the
    sidebar says why)."""
    if auth_configured():
        if getattr(st.user, "is_logged_in", False):
            return oidc_identity(st.user.to_dict())
        return None
    try:
        return _typed_identity()
    except BadInput:
        return None


def task() -> str | None:
    """The task chosen in the sidebar (None when the workspace has no task loaded)."""
    return st.session_state.get("task") or None


def model(role: str) -> str:
    """The model string for ``role`` ('teacher' or 'student')."""
    return st.session_state.get(f"{role}_model") or DEFAULT_MODEL


REVIEWER_PARAM = "reviewer"


def remember_reviewer() -> None:
    """Keep the typed name in the page address (``?reviewer=NAME``), so a reload, a bookmark
    or a second tab keeps who is reviewing; a name already in this session wins.

    Not ``bind="query-params"``: a bound parameter makes ``st.switch_page`` fail."""
    name = (st.session_state.get("reviewer") or "").strip()
    if not name and st.query_params.get(REVIEWER_PARAM):
        st.session_state["reviewer"] = name = st.query_params[REVIEWER_PARAM]
    if name and st.query_params.get(REVIEWER_PARAM) != name:
        st.query_params[REVIEWER_PARAM] = name
    elif not name and REVIEWER_PARAM in st.query_params:
        del st.query_params[REVIEWER_PARAM]


def render() -> None:
    """Draw the sidebar controls."""
    with st.sidebar:
        st.text_input("Workspace file", value=str(default_path()), key="ws_path",
                      help="One SQLite file holds everything; $PLD_WORKSPACE sets the default.")
        path = workspace_path()
        if not may_open(path):
            st.warning(f"There is no workspace file at {path}.")
            st.button("Create a new workspace there", key="ws_create", on_click=_allow_create,
                      args=(str(path),))
        ws = workspace()
        names = [t.name for t in loaded_tasks(ws)] if ws is not None else []
        if names:
            if st.session_state.get("task") not in names:
                st.session_state["task"] = names[0]
            st.selectbox("Task", names, key="task")
        else:
            st.session_state["task"] = None
            st.caption("No task loaded yet: start on the Data page.")
        if auth_configured():
            if getattr(st.user, "is_logged_in", False):
                me = identity()
                st.text(f"Signed in as {me.name if me else ''}")  # plain: no Markdown
                st.button("Log out", on_click=st.logout)
            else:
                st.button("Log in to review", on_click=st.login)
        else:
            remember_reviewer()
            st.text_input("Reviewer name", key="reviewer",
                          help="Recorded with every edit and approval as a self-declared "
                               "identity (configure [auth] in .streamlit/secrets.toml for "
                               "OIDC login).")
            try:
                _typed_identity()
            except BadInput as e:
                st.error(literal(e))  # quotes the typed name
        for role in ("teacher", "student"):
            st.text_input(f"{role.title()} model", value=os.environ.get(
                f"PLD_{role.upper()}", DEFAULT_MODEL), key=f"{role}_model")
            try:
                parse_model(model(role))
            except ConfigError as e:
                st.error(str(e))
