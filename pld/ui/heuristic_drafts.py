"""New draft heuristics on the Heuristics page: merging several into one, splitting one into
several, and writing one by hand, as the signed-in reviewer (:mod:`pld.review`).

Each new draft is its author's, so someone else must approve it; the page's list then opens it.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from pld import review, review_rows
from pld.identity import Identity
from pld.ui.acting import SIGN_IN, act
from pld.workspace import Workspace


def short(text: str, n: int = 80) -> str:
    """``text`` on one line, cut to ``n`` characters (for a selectbox option)."""
    one = " ".join((text or "").split())
    return one if len(one) <= n else one[: n - 1] + "…"


def _comment(key: str) -> str | None:
    return (st.session_state.get(key) or "").strip() or None


def _open_heuristic(hid: int) -> None:
    """Select ``hid`` in the page's list (a new draft: make sure the filter shows it)."""
    if st.session_state.get("h_filter") not in (None, "all", review_rows.DRAFT):
        st.session_state["h_filter"] = "all"
    st.session_state["h_selected"] = hid


def _split_keys(hid: int, version: int) -> list[str]:
    n = int(st.session_state.get(f"h_split_n_{hid}") or 2)
    return [f"h_split_{hid}_v{version}_{i}" for i in range(n)]


def _split(ws: Workspace, hid: int, version: int) -> None:
    keys = _split_keys(hid, version)
    texts = [st.session_state.get(k) or "" for k in keys]

    def run(who: Identity) -> str:
        new = review.split_heuristic(ws, hid, texts, who, base_version=version,
                                     comment=_comment(f"h_split_comment_{hid}"))
        for key in [*keys, f"h_split_comment_{hid}", f"h_split_n_{hid}"]:
            st.session_state.pop(key, None)
        _open_heuristic(new[0])
        return (f"Split #{hid} into {', '.join(f'#{i}' for i in new)}: drafts that someone "
                f"other than {who.name} must approve.")

    act("split", run, refused=lambda e: f"Not split: {e}")


def _fill_merge_text(texts: dict[int, str]) -> None:
    """Start the merged text from the chosen heuristics' texts, unless the reviewer typed."""
    current = st.session_state.get("h_merge_text") or ""
    if current.strip() and current != st.session_state.get("_h_merge_auto"):
        return
    ids = st.session_state.get("h_merge_ids") or []
    auto = "\n".join(texts[i] for i in ids if i in texts)
    st.session_state["h_merge_text"] = st.session_state["_h_merge_auto"] = auto


def _merge(ws: Workspace, versions: dict[int, int]) -> None:
    ids = [int(i) for i in st.session_state.get("h_merge_ids") or []]

    def run(who: Identity) -> str:
        # The versions the reviewer saw: a heuristic changed since is refused as stale.
        new = review.merge_heuristics(ws, ids, st.session_state.get("h_merge_text") or "",
                                      who, base_versions={i: versions[i] for i in ids},
                                      comment=_comment("h_merge_comment"))
        st.session_state["h_merge_ids"] = []
        for key in ("h_merge_text", "h_merge_comment", "_h_merge_auto"):
            st.session_state.pop(key, None)
        _open_heuristic(new)
        return (f"Merged {', '.join(f'#{i}' for i in sorted(set(ids)))} into draft #{new}; "
                f"someone other than {who.name} must approve it.")

    act("merge", run, refused=lambda e: f"Not merged: {e}")


def _create(ws: Workspace, task: str) -> None:
    def run(who: Identity) -> str:
        new = review.create_heuristic(ws, task, st.session_state.get("h_new_text") or "",
                                      who, comment=_comment("h_new_comment"))
        for key in ("h_new_text", "h_new_comment"):
            st.session_state.pop(key, None)
        _open_heuristic(new)
        return f"Added draft heuristic #{new}; someone other than {who.name} must approve it."

    act("add a heuristic", run, refused=lambda e: f"Not added: {e}")


def merge_panel(ws: Workspace, rows: list[dict[str, Any]], me: Identity | None) -> None:
    """"Merge heuristics": several live heuristics of ``rows`` into one new draft."""
    live = [r for r in rows if r["status"] in review_rows.LIVE]
    with st.expander("Merge heuristics"):
        if len(live) < 2:
            st.caption("Merging needs at least two draft, approved or rejected heuristics.")
            return
        st.write("Replace several heuristics by one draft whose sources are all of theirs; the "
                 "old ones become *merged* and leave the prompt.")
        versions = {r["id"]: r["version"] for r in live}
        texts = {r["id"]: r["text"] for r in live}
        # Merged or split since: drop them from the choice before the widget is drawn.
        if "h_merge_ids" in st.session_state:
            st.session_state["h_merge_ids"] = [
                i for i in st.session_state["h_merge_ids"] if i in versions]
        st.multiselect("Heuristics to merge", list(versions), key="h_merge_ids",
                       format_func=lambda i: f"#{i} · {short(texts[i], 60)}",
                       on_change=_fill_merge_text, args=(texts,), disabled=me is None)
        st.text_area("Merged text", key="h_merge_text", height=140, disabled=me is None)
        st.text_input("Comment", key="h_merge_comment", disabled=me is None)
        st.button("Merge", key="h_merge", on_click=_merge, args=(ws, versions),
                  disabled=me is None)


def create_panel(ws: Workspace, task: str, me: Identity | None) -> None:
    """"Write a new heuristic": a draft written by hand, with no source rules."""
    with st.expander("Write a new heuristic"):
        st.text_area("Text", key="h_new_text", height=100, disabled=me is None)
        st.text_input("Comment", key="h_new_comment", disabled=me is None)
        st.button("Add draft", key="h_new", on_click=_create, args=(ws, task),
                  disabled=me is None, help="You are its author, so someone else must approve "
                                            "it.")


def split_tab(ws: Workspace, h: dict[str, Any], me: Identity | None) -> None:
    """The Split tab of heuristic ``h``: its text into several drafts."""
    hid, version = h["id"], h["version"]
    if h["status"] not in review_rows.LIVE:
        st.info(f"This heuristic is {h['status']}; it can no longer be split.")
        return
    if me is None:
        st.info(f"{SIGN_IN} to split.")
    st.caption("Replace this heuristic by several drafts, each keeping all its sources; this "
               "one becomes *split* and leaves the prompt.")
    st.number_input("Parts", min_value=2, max_value=6, value=2, key=f"h_split_n_{hid}",
                    disabled=me is None)
    # The version is in the keys: parts prefilled from an older text must not survive an edit.
    for i, key in enumerate(_split_keys(hid, version)):
        st.text_area(f"Part {i + 1}", value=h["text"], key=key, height=100,
                     disabled=me is None)
    st.text_input("Comment", key=f"h_split_comment_{hid}", disabled=me is None)
    st.button("Split", key=f"h_split_{hid}", on_click=_split, args=(ws, hid, version),
              disabled=me is None)
