"""Calls: the LLM call log of the workspace (:mod:`pld.llm.calls`): totals per model and stage,
a filtered and paged list of calls, and one call's full prompt and response."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from pld.llm import calls
from pld.llm.batch_store import list_batches, progress_row
from pld.number_format import seconds, seconds_text
from pld.ui import page
from pld.ui.escape import literal, say
from pld.ui.tables import untrusted_table
from pld.workspace import Workspace, loads

ALL = "(all)"
HITS, MISSES = "cache hits", "model calls"
PAGE_SIZES = (25, 50, 100, 250)


def _totals(total: dict[str, Any]) -> None:
    # Two rows of three: a token total of a real run (7 digits with separators) fits whole.
    c = st.columns(3)
    c[0].metric("Calls", f"{total['calls']:,}")
    c[1].metric("Cache hits", f"{total['cache_hits']:,}",
                help="Answered from the workspace cache, no model call made")
    c[2].metric("Errors", f"{total['errors']:,}")
    c = st.columns(4)
    c[0].metric("Tokens in", f"{total['input_tokens']:,}",
                help=f"{total['cached_tokens']:,} input tokens served from a provider cache")
    c[1].metric("Tokens out", f"{total['output_tokens']:,}")
    c[2].metric("Latency", seconds_text(total["latency_s"]), help="Sum over all calls")
    c[3].metric("Cost", f"${total['cost_usd']:.4f}", help="Estimate from list prices")


def _groups(groups: list[dict[str, Any]]) -> None:
    untrusted_table(pd.DataFrame([{
        "model": g["model"], "stage": g["stage"], "calls": g["calls"],
        "cache hits": g["cache_hits"], "errors": g["errors"], "tokens in": g["input_tokens"],
        "tokens out": g["output_tokens"], "cached tokens": g["cached_tokens"],
        "latency s": seconds(g["latency_s"]), "cost $": g["cost_usd"],
    } for g in groups]), "calls-by-model-and-stage.csv",
        column_config={"latency s": st.column_config.NumberColumn(format="%.1f")})


def _first_page() -> None:
    # Other filters, other rows: page 3 of the old ones means nothing; start from page 1.
    st.session_state.pop("k_page", None)


def _filters(groups: list[dict[str, Any]]) -> tuple[dict[str, Any], int]:
    """The filter widgets; returns :func:`pld.llm.calls.list_calls` arguments and page size."""
    stages = sorted({g["stage"] for g in groups if g["stage"]})
    models = sorted({g["model"] for g in groups if g["model"]})
    c1, c2, c3, c4, c5 = st.columns([2, 3, 2, 1, 1])
    stage = c1.selectbox("Stage", [ALL, *stages], key="k_stage", on_change=_first_page)
    model = c2.selectbox("Model", [ALL, *models], key="k_model", on_change=_first_page)
    cache = c3.selectbox("Cache", [ALL, HITS, MISSES], key="k_cache", on_change=_first_page,
                         help="Cache hits were answered from the workspace cache; model calls "
                              "reached the model (or failed trying).")
    errors = c4.checkbox("Errors only", key="k_errors", on_change=_first_page)
    size = c5.selectbox("Rows per page", PAGE_SIZES, key="k_size", on_change=_first_page)
    return {"stage": None if stage == ALL else stage, "model": None if model == ALL else model,
            "cache_hit": {HITS: True, MISSES: False}.get(cache), "errors_only": errors}, size


def _table(rows: list[dict[str, Any]]) -> None:
    untrusted_table(pd.DataFrame([{
        "id": r["id"], "when": r["created_at"], "model": r["model"], "stage": r["stage"],
        "run": r["run_id"], "cache hit": bool(r["cache_hit"]), "tokens in": r["input_tokens"],
        "tokens out": r["output_tokens"], "latency s": seconds(r["latency_s"]),
        "cost $": r["cost_usd"], "attempt": r["attempt"], "error": r["error"] or "",
    } for r in rows]), "calls.csv",
        column_config={"latency s": st.column_config.NumberColumn(format="%.1f")})


def _messages(raw: str | None) -> list[dict[str, Any]]:
    try:
        value = loads(raw, [])
    except ValueError:
        return [{"role": "?", "content": raw or ""}]
    return value if isinstance(value, list) else [{"role": "?", "content": str(value)}]


def _detail(row: dict[str, Any]) -> None:
    hit = " · cache hit" if row["cache_hit"] else ""
    # A batch answer has no latency of its own: the batch as a whole took its time.
    took = (f"provider batch {row['batch_id']}" if row.get("batch_id")
            else seconds_text(row["latency_s"] or 0))
    st.caption(f"Call #{row['id']} · {row['created_at']} · {literal(row['model'])} · stage "
               f"{row['stage']} · run {row['run_id']} · attempt {row['attempt']}{hit} · "
               f"{took} · key {(row['cache_key'] or '')[:16]}")
    if row["error"]:
        say("error", row["error"])  # may quote the model's reply
    if row["system"]:
        st.markdown("**System prompt**")
        st.code(row["system"], language=None, wrap_lines=True)
    st.markdown("**Messages**")
    for m in _messages(row["messages"]):
        content = m.get("content")
        st.markdown(f"*{literal(m.get('role', '?'))}*")
        st.code(content if isinstance(content, str) else str(content), language=None,
                wrap_lines=True)
    st.markdown("**Response**")
    if row["response"] is None:
        st.caption("No response (the call failed).")
    else:
        st.code(row["response"], language=None, wrap_lines=True)
    params = loads(row["params"], None) if row["params"] else None
    if params:
        with st.expander("Parameters"):
            st.json(params)


def _log(ws: Workspace, groups: list[dict[str, Any]]) -> None:
    filters, size = _filters(groups)
    total = calls.count_calls(ws, **filters)
    if not total:
        st.info("No call matches these filters.")
        return
    pages = -(-total // size)
    if st.session_state.get("k_page", 1) > pages:  # fewer calls than when the page was chosen
        st.session_state["k_page"] = pages
    page = int(st.number_input(f"Page (of {pages:,})", min_value=1, max_value=pages, value=1,
                               key="k_page"))
    rows = calls.list_calls(ws, **filters, limit=size, offset=(page - 1) * size)
    first = (page - 1) * size + 1
    st.caption(f"Calls {first:,}–{first + len(rows) - 1:,} of {total:,}, newest first · "
               f"page {page:,} of {pages:,}.")
    _table(rows)
    by_id = {r["id"]: r for r in rows}
    chosen = st.selectbox("Open call", list(by_id), key="k_call",
                          format_func=lambda i: f"#{i} · {by_id[i]['stage']} · "
                                                f"{by_id[i]['model']}"
                                                + (" · error" if by_id[i]["error"] else ""))
    _detail(by_id[chosen])


def main() -> None:
    """Draw the page."""
    st.title("Calls")
    ws, _task = page.setup()
    if ws is None:
        return
    st.caption("Every LLM call goes through one cache and one log: tokens, latency, cost "
               "estimate, cache hits and errors, by model and stage.")
    summary = calls.summarize_calls(ws)
    _totals(summary["total"])
    if not summary["total"]["calls"]:
        st.info("No LLM call in this workspace yet. Calls appear here as soon as a stage runs "
                "(or `python -m pld ask MODEL \"text\"`).")
        return
    st.subheader("By model and stage")
    _groups(summary["by_model_stage"])
    if summary["by_run"]:
        with st.expander(f"Spend per run ({len(summary['by_run'])})"):
            untrusted_table(pd.DataFrame([{
                "run": r["run_id"], "task": r["task"], "kind": r["kind"], "status": r["status"],
                "started": r["started_at"], "calls": r["calls"], "cache hits": r["cache_hits"],
                "tokens in": r["input_tokens"], "tokens out": r["output_tokens"],
                "cost $": r["cost_usd"]} for r in summary["by_run"]]), "calls-by-run.csv")
    batches = list_batches(ws)
    if batches:
        with st.expander(f"Provider batches ({len(batches)})"):
            untrusted_table(pd.DataFrame([progress_row(b) for b in batches]),
                            "provider-batches.csv")
    st.subheader("Call log")
    _log(ws, summary["by_model_stage"])


main()
