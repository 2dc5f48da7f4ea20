"""Offering a reviewer's unsaved draft back (:mod:`pld.drafts`) where they left it: when it was
kept, whether the item changed since, and the choice to restore it or throw it away."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import streamlit as st

from pld import drafts


def kept_at(stamp: str) -> str:
    """A draft's ``updated_at`` as a reviewer reads it: ``2025-03-01 14:05 UTC``."""
    return f"{stamp[:16].replace('T', ' ')} UTC"


def offer_draft(kept: dict[str, dict[str, Any]], *, what: str, version: int, key: str,
                restore: Callable[[], None] | None, discard: Callable[[], None],
                stale_note: str = "") -> None:
    """Show ``kept`` (:func:`pld.drafts.get_drafts`) as the reviewer's unsaved draft of
    ``what`` (now at ``version``) with Restore and Discard buttons (keys ``KEY_restore`` and
    ``KEY_discard``); ``restore`` None: the item can no longer take it, only discarding is
    offered. A draft typed against an older version says the text changed since, and
    ``stale_note`` what restoring it then does."""
    with st.container(border=True):
        st.info(f"You have an unsaved draft of {what} from {kept_at(drafts.last_saved(kept))}. "
                "Only you see it.")
        base = drafts.base_version(kept)
        if base is not None and base < version:
            st.warning(f"The text changed since: your draft was typed on version {base}, it is "
                       f"now version {version}. {stale_note}".strip())
        if drafts.TEXT in kept:
            st.code(kept[drafts.TEXT]["text"], language=None, wrap_lines=True)
        if drafts.COMMENT in kept:
            st.text(f"comment: {kept[drafts.COMMENT]['text']}")  # plain: no Markdown
        c1, c2 = st.columns(2)
        c1.button("Restore my draft", key=f"{key}_restore", type="primary",
                  on_click=restore or (lambda: None), disabled=restore is None)
        c2.button("Discard my draft", key=f"{key}_discard", on_click=discard)
