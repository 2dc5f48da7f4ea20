"""Editing one heuristic's text (Heuristics page): the open editor, and an edit refused because
someone changed the heuristic first, shown three ways (base, theirs, yours) until the reviewer
redoes it on their text or discards it.

The editor carries the version it was opened on, so a save over a newer version is refused as
stale (:class:`pld.review_rows.StaleEdit`) instead of silently undoing the other change. The
unsaved work is kept per reviewer in session state, and as they type as their private draft in
the workspace (:mod:`pld.drafts`), offered back after a reload until saved or discarded.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from pld import drafts, review, review_rows
from pld.identity import Identity
from pld.ui import diffs, sidebar
from pld.ui.acting import SIGN_IN, act
from pld.ui.draft_offer import offer_draft
from pld.ui.escape import literal, say
from pld.workspace import Workspace


def _key(part: str, hid: int) -> str:
    """The session key of one person's unsaved work on heuristic ``hid`` (editor text, base,
    refused edit): keyed by the reviewer, so switching names never carries it over."""
    me = sidebar.identity()
    return f"h_{part}_{hid}_{me.name if me else ''}"


def _open_edit(hid: int, version: int, text: str) -> None:
    st.session_state[_key("edit_base", hid)] = {"version": version, "text": text}
    st.session_state[_key("edit_text", hid)] = text
    st.session_state.pop(_key("stale", hid), None)


def _close_edit(hid: int) -> None:
    for key in (_key("edit_base", hid), _key("edit_text", hid), _key("edit_comment", hid),
                _key("edit_mine", hid), _key("edit_kept", hid)):
        st.session_state.pop(key, None)


_FIELD_KEYS = {drafts.TEXT: "edit_text", drafts.COMMENT: "edit_comment"}


def _keep_draft(ws: Workspace, hid: int, field: str) -> None:
    """Keep what the reviewer typed in the editor's ``field`` as their private draft (a text
    still equal to the one they started from is no draft)."""
    me, base = sidebar.identity(), st.session_state.get(_key("edit_base", hid))
    if me is None or base is None:
        return
    typed = st.session_state.get(_key(_FIELD_KEYS[field], hid)) or ""
    if field == drafts.TEXT and typed == base["text"]:
        typed = ""
    drafts.save_draft(ws, me, review_rows.HEURISTIC, hid, field, typed, base["version"])


def _discard_draft(ws: Workspace, hid: int) -> None:
    me = sidebar.identity()
    if me is not None:
        drafts.discard_drafts(ws, me, review_rows.HEURISTIC, hid)


def _cancel_edit(ws: Workspace, hid: int) -> None:
    _discard_draft(ws, hid)
    _close_edit(hid)


def _restore_draft(ws: Workspace, hid: int, version: int, text: str) -> None:
    """Reopen the editor on the reviewer's draft, against the version it was typed on: a
    draft older than ``version`` is then refused as stale when saved, never saved over the
    newer text."""
    me = sidebar.identity()
    if me is None:
        return
    kept = drafts.get_drafts(ws, me, review_rows.HEURISTIC, hid)
    base_version = drafts.base_version(kept) or version
    base_text = text if base_version == version else (
        review.text_at_version(ws, hid, base_version) or text)
    _open_edit(hid, base_version, base_text)
    for field, part in _FIELD_KEYS.items():
        if field in kept:
            st.session_state[_key(part, hid)] = kept[field]["text"]


def _keep_refused(hid: int, text: str, base: dict[str, Any], e: review_rows.StaleEdit) -> None:
    """Keep a refused edit with what it was based on and what replaced that, for the
    three-way view."""
    theirs = e.theirs or {}
    st.session_state[_key("stale", hid)] = {
        "mine": text, "base_version": base["version"], "base_text": base["text"],
        "message": str(e),
        "theirs": e.current["text"], "version": e.current["version"],
        "status": e.current["status"], "who": theirs.get("who"),
        "action": theirs.get("action"), "at": theirs.get("created_at"),
    }
    _close_edit(hid)


def _save_edit(ws: Workspace, hid: int) -> None:
    base = st.session_state.get(_key("edit_base", hid))
    if base is None:
        return
    text = st.session_state.get(_key("edit_text", hid)) or ""
    comment = (st.session_state.get(_key("edit_comment", hid)) or "").strip() or None

    def run(who: Identity) -> str:
        try:
            row = review.edit(ws, hid, text, who, base_version=base["version"],
                              comment=comment)
        except review_rows.StaleEdit as e:
            _keep_refused(hid, text, base, e)  # the draft stays until redone or discarded
            raise
        drafts.discard_drafts(ws, who, review_rows.HEURISTIC, hid)
        _close_edit(hid)
        return (f"Saved heuristic #{hid} as version {row['version']} (a draft: someone other "
                f"than {who.name} must approve it).")

    # A stale edit is shown with its three-way view, reason included: said once, not twice.
    act("save", run, refused=lambda e: None if isinstance(e, review_rows.StaleEdit)
        else f"Not saved: {e}")


def _redo_on_theirs(hid: int) -> None:
    """Reopen the editor on *their* text (the current version), keeping the reviewer's refused
    text beside it: starting from their text, saving cannot silently undo their change."""
    stale = st.session_state.pop(_key("stale", hid), None)
    if stale is not None:
        st.session_state[_key("edit_base", hid)] = {"version": stale["version"],
                                                  "text": stale["theirs"]}
        st.session_state[_key("edit_text", hid)] = stale["theirs"]
        st.session_state[_key("edit_mine", hid)] = {"text": stale["mine"],
                                                  "base_text": stale.get("base_text", ""),
                                                  "base_version": stale["base_version"]}


def _discard_stale(ws: Workspace, hid: int) -> None:
    st.session_state.pop(_key("stale", hid), None)
    _discard_draft(ws, hid)


def _three_way(base_version: int, base_text: str, theirs_label: str, theirs: str,
               mine: str) -> None:
    """Base, theirs and mine side by side, each change marked against the base."""
    b, t, m = st.columns(3)
    with b:
        st.markdown(f"**Base** (v{base_version}, what you started from)")
        st.code(base_text, language=None, wrap_lines=True)
    # Beside the base, each side is shown as it reads, its new words marked.
    with t:
        st.markdown(f"**Theirs** ({theirs_label})")
        st.html(diffs.side_html(diffs.word_diff(base_text, theirs), diffs.INSERT))
    with m:
        st.markdown("**Yours** (not saved)")
        st.html(diffs.side_html(diffs.word_diff(base_text, mine), diffs.INSERT))


def _stale_view(ws: Workspace, hid: int, stale: dict[str, Any]) -> None:
    """Drawn above the tabs, so the refused text is in front of the reviewer, not one click
    away; nothing of theirs or yours is lost until they choose."""
    say("error", f"Your edit was not saved: {stale['message']}")
    by = f" by {literal(stale['who'])} ({stale['action']})" if stale["who"] else ""
    _three_way(stale["base_version"], stale.get("base_text", ""),
               f"v{stale['version']}, {stale['status']}{by}", stale["theirs"], stale["mine"])
    c1, c2 = st.columns(2)
    c1.button("Redo mine on theirs", key=f"h_redo_{hid}", on_click=_redo_on_theirs,
              args=(hid,), type="primary",
              help="Opens the editor on their text (the current version), with yours beside "
                   "it to carry your change over; nothing is saved until you save.")
    c2.button("Discard my text", key=f"h_discard_{hid}", on_click=_discard_stale,
              args=(ws, hid))


def _editor(ws: Workspace, h: dict[str, Any], base: dict[str, Any]) -> None:
    hid = h["id"]
    mine = st.session_state.get(_key("edit_mine", hid))
    if mine is not None:
        st.info("Redoing your change on their version: the box starts from their text. Carry "
                "your change over, then save.")
        _three_way(mine["base_version"], mine["base_text"], f"v{base['version']}, now",
                   base["text"], mine["text"])
    st.caption(f"Editing from version {base['version']}. Saving makes it a draft that someone "
               "else must approve.")
    text_key, kept_key = _key("edit_text", hid), _key("edit_kept", hid)
    # Streamlit forgets a widget's value while it is not drawn (another reviewer's name in
    # the sidebar): a copy outside the widget brings the unsaved text back.
    if text_key not in st.session_state and kept_key in st.session_state:
        st.session_state[text_key] = st.session_state[kept_key]
    st.text_area("Text", key=text_key, height=160, on_change=_keep_draft,
                 args=(ws, hid, drafts.TEXT))
    st.session_state[kept_key] = st.session_state.get(text_key)
    st.text_input("Comment", key=_key("edit_comment", hid), on_change=_keep_draft,
                  args=(ws, hid, drafts.COMMENT))
    new = st.session_state.get(_key("edit_text", hid)) or ""
    if diffs.changed(diffs.word_diff(base["text"], new)):
        st.caption(f"Your change against version {base['version']}:")
        st.html(diffs.diff_html(base["text"], new, old_title=f"Version {base['version']}",
                                new_title="Yours"))
    c1, c2 = st.columns(2)
    c1.button("Save", key=f"h_save_{hid}", type="primary", on_click=_save_edit, args=(ws, hid))
    c2.button("Cancel", key=f"h_cancel_{hid}", on_click=_cancel_edit, args=(ws, hid),
              help="Closes the editor and throws away your unsaved text.")


def _kept(ws: Workspace, hid: int, me: Identity | None) -> dict[str, dict[str, Any]]:
    """The reviewer's draft of heuristic ``hid`` to offer back: only while this session has
    neither an open editor nor a refused edit of it (those hold the same text)."""
    if me is None or any(_key(part, hid) in st.session_state for part in ("stale", "edit_base")):
        return {}
    return drafts.get_drafts(ws, me, review_rows.HEURISTIC, hid)


def editor_panel(ws: Workspace, h: dict[str, Any], me: Identity | None) -> None:
    """Above the tabs of heuristic ``h`` (a rerun shows the first tab again): the reviewer's
    refused edit, their open editor, or their unsaved draft from an earlier session; nothing
    when they have none of these."""
    hid = h["id"]
    stale = st.session_state.get(_key("stale", hid))
    base = st.session_state.get(_key("edit_base", hid))
    kept = _kept(ws, hid, me)
    if stale is not None:
        _stale_view(ws, hid, stale)
    elif me is not None and base is not None and h["status"] in review_rows.LIVE:
        with st.container(border=True):
            _editor(ws, h, base)
    elif kept:
        live = h["status"] in review_rows.LIVE
        offer_draft(
            kept, what=f"heuristic #{hid}", version=h["version"], key=f"h_draft_{hid}",
            restore=(lambda: _restore_draft(ws, hid, h["version"], h["text"])) if live
            else None,
            discard=lambda: _discard_draft(ws, hid),
            stale_note="Restored, saving it is refused until you redo it on the new text "
                       "(shown side by side).")


def edit_tab(ws: Workspace, h: dict[str, Any], me: Identity | None) -> None:
    """The Edit tab of heuristic ``h``: opens the editor (drawn above the tabs)."""
    hid = h["id"]
    if st.session_state.get(_key("stale", hid)) is not None:
        st.caption("Your refused edit is shown above the tabs.")
        return
    if h["status"] not in review_rows.LIVE:
        st.info(f"This heuristic is {h['status']}; it can no longer be edited.")
        return
    if _kept(ws, hid, me):
        st.caption("Your unsaved draft is offered above the tabs: restore it or discard it.")
        return
    if me is not None and st.session_state.get(_key("edit_base", hid)) is not None:
        st.caption("The editor is open above the tabs.")
        return
    if me is None:
        st.info(f"{SIGN_IN} to edit.")
    st.button("Edit this heuristic", key=f"h_open_edit_{hid}", on_click=_open_edit,
              args=(hid, h["version"], h["text"]), disabled=me is None)
