"""The preamble's edit box (Heuristics page, in the preamble's review panel): the text to
rewrite, a comment and Save, as the signed-in reviewer.

What the reviewer types is kept as their private draft (:mod:`pld.drafts`) and offered back
after a reload (:mod:`pld.ui.draft_offer`) until they save or discard it. While the reviewer
has typed nothing the box follows the current text (someone else's save shows at once); once
they type, it keeps their text and the version they started from, so a save over a newer
version is refused as stale instead of silently undoing the other change.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from pld import drafts, preamble, review, review_rows
from pld.identity import Identity
from pld.ui import page, sidebar
from pld.ui.acting import act
from pld.ui.draft_offer import offer_draft
from pld.workspace import Workspace

_PARTS = ("text", "comment", "base", "mine")  # box, comment, version started from, refused text


def _keys(task: str, who: Identity) -> dict[str, str]:
    """The session keys of one reviewer's edit of the task's preamble: keyed by the reviewer,
    so switching names never carries it over."""
    return {part: f"pre_{part}_{task}_{who.name}" for part in _PARTS}


_FIELD_PARTS = {drafts.TEXT: "text", drafts.COMMENT: "comment"}


def _forget(keys: dict[str, str]) -> None:
    for key in keys.values():
        st.session_state.pop(key, None)


def _keep_draft(ws: Workspace, task: str, pid: int, field: str, version: int,
                text: str) -> None:
    """Keep what the reviewer typed in ``field`` as their private draft, typed against the
    version they started from (``version``, ``text`` when they start now); a text still equal
    to that version's is no draft."""
    me = sidebar.identity()
    if me is None:
        return
    keys = _keys(task, me)
    base = st.session_state.setdefault(keys["base"], {"version": version, "text": text})
    typed = st.session_state.get(keys[_FIELD_PARTS[field]]) or ""
    if field == drafts.TEXT and typed == base["text"]:
        typed = ""
    drafts.save_draft(ws, me, review_rows.PREAMBLE, pid, field, typed, base["version"])
    if keys["mine"] not in st.session_state and not drafts.get_drafts(
            ws, me, review_rows.PREAMBLE, pid):
        st.session_state.pop(keys["base"])  # typed back to where it started: follow again


def _discard(ws: Workspace, task: str, pid: int) -> None:
    """Throw the reviewer's draft away; the box shows the current text again."""
    me = sidebar.identity()
    if me is not None:
        drafts.discard_drafts(ws, me, review_rows.PREAMBLE, pid)
        _forget(_keys(task, me))


def _restore(ws: Workspace, task: str, row: dict[str, Any]) -> None:
    """Refill the box and comment with the reviewer's draft, against the version it was typed
    on: a draft older than the preamble is then refused as stale when saved."""
    me = sidebar.identity()
    if me is None:
        return
    keys = _keys(task, me)
    kept = drafts.get_drafts(ws, me, review_rows.PREAMBLE, row["id"])
    version = drafts.base_version(kept) or row["version"]
    text = row["text"] if version == row["version"] else (
        review.text_at_version(ws, row["id"], version, review_rows.PREAMBLE) or row["text"])
    st.session_state[keys["base"]] = {"version": version, "text": text}
    for field, part in _FIELD_PARTS.items():
        st.session_state[keys[part]] = (kept[field]["text"] if field in kept
                                        else text if field == drafts.TEXT else "")


def _redo_on_current(task: str, row: dict[str, Any]) -> None:
    """Start the box again from the current text, keeping the reviewer's text beside it to
    carry their change over: starting from it, saving cannot undo the other change."""
    me = sidebar.identity()
    if me is None:
        return
    keys = _keys(task, me)
    st.session_state[keys["mine"]] = st.session_state.get(keys["text"]) or ""
    st.session_state[keys["base"]] = {"version": row["version"], "text": row["text"]}
    st.session_state[keys["text"]] = row["text"]


def _save(ws: Workspace, task: str, version: int) -> None:
    def run(me: Identity) -> str:
        keys = _keys(task, me)
        base = st.session_state.get(keys["base"]) or {"version": version}
        comment = (st.session_state.get(keys["comment"]) or "").strip() or None
        row = preamble.edit_preamble(ws, task, st.session_state.get(keys["text"]) or "", me,
                                     base_version=base["version"], comment=comment)
        drafts.discard_drafts(ws, me, review_rows.PREAMBLE, row["id"])
        _forget(keys)  # the box follows the saved text again
        return (f"Preamble saved as version {row['version']} (a draft: someone else must "
                "approve it).")

    # Refused (stale): the text and the draft stay, and the box offers to redo it.
    act("save the preamble", run, refused=lambda e: f"Preamble not saved: {e}")


def _refill(keys: dict[str, str], kept: dict[str, dict[str, Any]], base: dict[str, Any]) -> None:
    """Back from another page, Streamlit has forgotten the boxes: refill them with the draft."""
    for field, part in _FIELD_PARTS.items():
        if keys[part] not in st.session_state:
            st.session_state[keys[part]] = (kept[field]["text"] if field in kept
                                            else base["text"] if field == drafts.TEXT else "")


def _stale(task: str, row: dict[str, Any], base: dict[str, Any], mine: str | None) -> None:
    if mine is not None:
        st.info("Redoing your change on the current text: the box starts from it. Carry your "
                "change over, then save.")
        st.caption("Your text (not saved):")
        st.code(mine, language=None, wrap_lines=True)
    elif base["version"] < row["version"]:
        st.warning(f"The preamble changed since you started: you edited version "
                   f"{base['version']}, it is now version {row['version']} (shown above). "
                   "Saving your text is refused; redo your change on the current text.")
        st.button("Redo mine on the current text", key=f"pre_redo_{task}",
                  on_click=_redo_on_current, args=(task, row))


def has_draft(ws: Workspace, row: dict[str, Any], me: Identity | None) -> bool:
    """True when reviewer ``me`` keeps an unsaved draft of the preamble ``row``."""
    return me is not None and bool(drafts.get_drafts(ws, me, review_rows.PREAMBLE, row["id"]))


def preamble_editor(ws: Workspace, task: str, row: dict[str, Any], me: Identity) -> None:
    """The edit box of the task's preamble ``row`` for reviewer ``me``: their unsaved draft from
    an earlier session offered first, else the box with their text or the current one."""
    keys = _keys(task, me)
    base = st.session_state.get(keys["base"])
    kept = drafts.get_drafts(ws, me, review_rows.PREAMBLE, row["id"])
    if base is None and kept:
        offer_draft(kept, what="the preamble", version=row["version"], key=f"pre_draft_{task}",
                    restore=lambda: _restore(ws, task, row),
                    discard=lambda: _discard(ws, task, row["id"]),
                    stale_note="Restored, saving it is refused until you redo it on the "
                               "current text.")
        return
    if base is None:
        page.follow_value(keys["text"], row["text"])
        draft_of = (row["version"], row["text"])
    else:
        _refill(keys, kept, base)
        _stale(task, row, base, st.session_state.get(keys["mine"]))
        draft_of = (base["version"], base["text"])
    st.text_area("Edit the preamble", key=keys["text"], height=160, on_change=_keep_draft,
                 args=(ws, task, row["id"], drafts.TEXT, *draft_of))
    st.text_input("Comment", key=keys["comment"], on_change=_keep_draft,
                  args=(ws, task, row["id"], drafts.COMMENT, *draft_of))
    c1, c2 = st.columns(2)
    c1.button("Save preamble", key=f"pre_save_{task}", on_click=_save,
              args=(ws, task, row["version"]))
    if base is not None:
        c2.button("Discard my draft", key=f"pre_discard_{task}", on_click=_discard,
                  args=(ws, task, row["id"]), help="Throws away your unsaved text and comment; "
                                                   "the box shows the current text again.")
