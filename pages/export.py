"""Export: an approved prompt version becomes ``prompt.md`` plus ``manifest.json``
(:mod:`pld.pipeline.export`). A version whose heuristics are no longer all approved, or no
longer read as they did, is refused with the reason, and nothing can be downloaded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from pld import review
from pld.errors import BadInput
from pld.number_format import score
from pld.pipeline import export, student
from pld.pipeline.resolve import outcome
from pld.pipeline.student import PromptVersion
from pld.served_paths import EXPORTS, confine, served_root
from pld.ui import page, sidebar
from pld.ui.escape import literal, say
from pld.ui.tables import untrusted_table
from pld.workspace import Workspace


def _build(ws: Workspace, task: str) -> None:
    try:
        p = student.build_prompt(ws, task, who=sidebar.identity())
    except BadInput as e:
        page.flash("error", str(e))
    else:
        page.flash("success", f"Prompt v{p.version} holds {len(p.heuristic_ids)} approved "
                              "heuristics.")
        st.session_state["x_version"] = p.version


def _out_key(task: str, version: int) -> str:
    # Per version: a widget keeps its stored value, so one key would keep the first version's
    # default folder after switching to another version.
    return f"x_out_{task}_v{version}"


def _write(ws: Workspace, task: str, version: int) -> None:
    out = (st.session_state.get(_out_key(task, version)) or "").strip()
    if not out:
        page.flash("error", "Choose a folder to write to.")
        return
    try:
        folder = confine(out, "the export folder", EXPORTS)
        res = export.export(ws, task, folder, version=version, who=sidebar.identity())
    except BadInput as e:
        page.flash("error", f"Not exported: {e}")
    else:
        # Full paths: a folder typed as "data/exports/…" is relative to the server's folder,
        # which the reviewer may not know.
        page.flash("success", f"Wrote {res.prompt_path.resolve()} and "
                              f"{res.manifest_path.resolve()}.")


def _versions_table(prompts: list[PromptVersion], refusals: dict[int, str | None]) -> None:
    untrusted_table(pd.DataFrame([{
        "version": p.version, "created": p.created_at, "origin": p.origin,
        "parent": p.parent_version, "heuristics": len(p.heuristic_ids),
        "sha256": p.sha256[:12], "exportable": refusals[p.version] is None,
        "why not": refusals[p.version] or "",
    } for p in reversed(prompts)]), "prompt-versions.csv")


def _build_section(ws: Workspace, task: str) -> None:
    n = len(review.approved_heuristics(ws, task))
    with st.expander("Build a prompt version from the approved heuristics", expanded=False):
        st.write(f"{n} heuristic(s) of {literal(task)} are approved. Building the same set "
                 "again returns the version that already holds that text.")
        st.button("Build prompt version", key="x_build", disabled=n == 0, on_click=_build,
                  args=(ws, task))


def _calibration(manifest: dict[str, Any] | None) -> None:
    cal = (manifest or {}).get("calibration")
    if manifest is None:
        return
    if not cal:
        st.caption("No calibration travels with this prompt: evaluate it with a student that "
                   "gives label scores to fit one on validation.")
        return
    st.markdown("**Calibration exported with the prompt**")
    say("caption", f"Fitted for {cal['student']} ({cal['method']}, {cal['n_val']} validation "
                   f"items). {cal['how_to_apply']}")
    untrusted_table(pd.DataFrame([{"label": k, "bias": score(v)}
                                  for k, v in cal["bias"].items()]), "calibration.csv",
                    column_config={"bias": st.column_config.NumberColumn(format="%+.3f")})


def _downloads(ws: Workspace, p: PromptVersion, manifest: dict[str, Any] | None) -> None:
    refused = manifest is None
    # The same bytes export() writes to the folder.
    prompt_bytes = b"" if manifest is None else export.prompt_bytes(ws, p)
    manifest_bytes = b"" if manifest is None else export.manifest_bytes(manifest)
    c1, c2 = st.columns(2)
    c1.download_button(f"Download {export.PROMPT_FILE}", prompt_bytes,
                       file_name=export.PROMPT_FILE, mime="text/markdown", disabled=refused,
                       key="x_dl_prompt", on_click="ignore")
    # The downloaded manifest is recorded in the trail like a written one, so verify accepts it.
    c2.download_button(f"Download {export.MANIFEST_FILE}", manifest_bytes,
                       file_name=export.MANIFEST_FILE, mime="application/json",
                       disabled=refused, key="x_dl_manifest", on_click=_record_download,
                       args=(ws, p, manifest_bytes))


def _record_download(ws: Workspace, p: PromptVersion, data: bytes) -> None:
    export.record_export(ws, p, data, where="download", who=sidebar.identity())


def main() -> None:
    """Draw the page."""
    ws, task = page.task_page(
        "Export", "prompt.md is the exact system prompt (its sha256 is in the manifest); "
        "manifest.json says which heuristics it holds, who approved them and how they were "
        "identified, what they were distilled from, and every evaluation of it.")
    _build_section(ws, task)
    prompts = student.list_prompts(ws, task)
    if not prompts:
        say("info", f"Task {task} has no prompt version yet. Approve heuristics on the "
                    "Heuristics page, then build one above (or run the conflict loop).")
        return
    statement = outcome.no_heuristic_helped(ws, task)
    if statement:  # the conflict loop's outcome, not an error
        say("info", statement)
    refusals = {p.version: export.refusal(ws, p) for p in prompts}
    _versions_table(prompts, refusals)
    by_version = {p.version: p for p in prompts}
    ok = [v for v in by_version if refusals[v] is None]
    default = (ok or list(by_version))[-1]
    if st.session_state.get("x_version") not in by_version:
        st.session_state["x_version"] = default
    version = st.selectbox("Prompt version", list(reversed(by_version)), key="x_version",
                           format_func=lambda v: f"v{v}" + (" (exportable)" if refusals[v]
                                                            is None else " (refused)"))
    p = by_version[version]
    manifest = None
    if refusals[version] is not None and not p.heuristic_ids:
        # The prompt without rules is the zero-shot baseline: not exported, and no error.
        say("caption" if statement else "info",
            f"Prompt v{version} holds no heuristic: it is the zero-shot baseline, which is "
            "not exported.")
    elif refusals[version] is not None:
        say("error", f"Refused: {refusals[version]}")
    else:
        try:
            manifest = export.build_manifest(ws, p)
        except BadInput as e:
            say("error", f"Refused: {e}")
    t_prompt, t_manifest = st.tabs([export.PROMPT_FILE, export.MANIFEST_FILE])
    with t_prompt:
        st.caption(f"sha256 {p.sha256}")
        st.code(p.text, language="markdown", wrap_lines=True)
    with t_manifest:
        if manifest is None:
            st.caption("No manifest: this version may not be exported.")
        else:
            st.json(manifest, expanded=2)
    _calibration(manifest)
    _downloads(ws, p, manifest)
    root = served_root()
    base = root / EXPORTS if root is not None else Path("data") / "exports"
    st.text_input("Or write both files to this folder", key=_out_key(task, version),
                  value=str(base / f"{task}-v{version}"))
    st.button("Write files", key="x_write", disabled=manifest is None, on_click=_write,
              args=(ws, task, version))


main()
