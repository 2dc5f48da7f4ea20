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
from pld.llm.registry import DEFAULT_MODEL, PROVIDERS, parse_model
from pld.served_paths import confine
from pld.tasks.store import loaded_tasks
from pld.ui.escape import say
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
        say("error", e)
        return None
    if not may_open(workspace_path()):
        return None
    try:
        return _open(str(path))
    except WorkspaceError as e:
        say("error", e)
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


ROLES = ("teacher", "student")


def model(role: str) -> str:
    """The model string for ``role`` ('teacher' or 'student')."""
    return st.session_state.get(f"{role}_model") or default_model(role)


def default_model(role: str) -> str:
    """The model ``role`` starts with: ``$PLD_TEACHER``/``$PLD_STUDENT``, else the local one."""
    return os.environ.get(f"PLD_{role.upper()}", DEFAULT_MODEL)


def _refused_key(role: str) -> str:
    return f"_pld_{role}_model_refused"


def _forget_refusal(role: str) -> None:
    # Typing another model answers the address's refused one: its message goes.
    st.session_state.pop(_refused_key(role), None)


def _address_refusal(value: str, e: ConfigError) -> str:
    """Why ``value`` from the address was refused, quoting none of it past the provider (or
    past the host, as :func:`~pld.llm.registry.parse_model` words it): a link can carry a
    key."""
    provider = value.partition("/")[0]
    shown = f"{provider}/…" if provider in PROVIDERS else "…"
    return str(e).replace(repr(value), shown).replace(repr(provider), "…")


def _model_from_address(role: str) -> str | None:
    """The model string the address names for ``role`` when it is a valid one; an invalid
    one is dropped from the address, and the sidebar says why it was not used."""
    value = st.query_params.get(role)
    if not value:
        return None
    try:
        return parse_model(value).model
    except ConfigError as e:
        st.session_state[_refused_key(role)] = (
            f"The {role} model in the page address was refused: "
            f"{_address_refusal(value, e)}. Using {default_model(role)} instead.")
        del st.query_params[role]
        return None


def remember_models() -> None:
    """Keep the teacher and student model strings in the page address (``?teacher=…``,
    ``?student=…``) like the reviewer name, so a reload does not quietly fall back to the
    default model; a model already in this session wins. A string from the address is checked
    first (:func:`_model_from_address`), and a typed one that does not parse never goes there.
    The default model is left out of the address."""
    for role in ROLES:
        key = f"{role}_model"
        if key not in st.session_state:
            st.session_state[key] = _model_from_address(role) or default_model(role)
        chosen = st.session_state[key]
        try:
            parse_model(chosen)
        except ConfigError:
            continue  # the sidebar says why; the address keeps the last good one
        if chosen == default_model(role):
            if role in st.query_params:
                del st.query_params[role]
        elif st.query_params.get(role) != chosen:
            st.query_params[role] = chosen


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


TASK_PARAM = "task"


def remember_task(names: list[str]) -> None:
    """Keep the chosen task in the page address (``?task=NAME``) like the reviewer and the
    models, so a reload stays on it; a task already chosen in this session wins, and a name
    the workspace does not hold falls back to its first task."""
    chosen = st.session_state.get("task")
    if chosen not in names:
        chosen = st.query_params.get(TASK_PARAM)
        st.session_state["task"] = chosen if chosen in names else names[0]
    if st.query_params.get(TASK_PARAM) != st.session_state["task"]:
        st.query_params[TASK_PARAM] = st.session_state["task"]


def render() -> None:
    """Draw the sidebar controls."""
    with st.sidebar:
        st.text_input("Workspace file", value=str(default_path()), key="ws_path",
                      help="One SQLite file holds everything; $PLD_WORKSPACE sets the default.")
        path = workspace_path()
        if not may_open(path):
            say("warning", f"There is no workspace file at {path}.")
            st.button("Create a new workspace there", key="ws_create", on_click=_allow_create,
                      args=(str(path),))
        ws = workspace()
        names = [t.name for t in loaded_tasks(ws)] if ws is not None else []
        if names:
            remember_task(names)
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
                say("error", e)  # quotes the typed name
        remember_models()
        for role in ROLES:
            st.text_input(f"{role.title()} model", key=f"{role}_model",
                          on_change=_forget_refusal, args=(role,))
            if st.session_state.get(_refused_key(role)):
                say("error", st.session_state[_refused_key(role)])
            try:
                parse_model(model(role))
            except ConfigError as e:
                say("error", e)  # quotes the model string
