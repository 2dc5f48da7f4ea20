"""Model commands: ``ask`` (one call) and ``calls`` (the call log)."""

from __future__ import annotations

from typing import Any

import click

from pld.cli import options
from pld.cli.common import ctx_workspace, emit, with_context
from pld.cli.root import cli
from pld.cli.stages import check_model


@cli.command("ask")
@click.argument("model")
@click.argument("text")
@click.option("--system", default=None, help="System prompt.")
@click.option("--max-tokens", type=int, default=512, show_default=True,
              help="Longest answer, in tokens.")
@click.option("--no-cache", is_flag=True, help="Call the model even if the answer is cached.")
@options.json_output
@with_context
def ask_cmd(ctx: click.Context, model: str, text: str, system: str | None, max_tokens: int,
            no_cache: bool, as_json: bool) -> None:
    """Send TEXT to MODEL in one call through the same cache and log (handy to check a key or
    a server).

    \b
    Examples:
      python -m pld ask local/default "Reply with one word: ready?"
      python -m pld ask openai/gpt-4.1-mini "ping" --system "Answer in one word." --no-cache
    """
    from pld.llm.calls import complete

    check_model(model)
    ws = ctx_workspace(ctx)
    result = complete(ws, model, [{"role": "user", "content": text}], system=system,
                      max_tokens=max_tokens, stage="ask", use_cache=not no_cache)
    r = result.reply
    data = {"model": model, "text": r.text, "input_tokens": r.input_tokens,
            "output_tokens": r.output_tokens, "cached_tokens": r.cached_tokens,
            "latency_s": round(r.latency_s, 3), "cache_hit": result.cached,
            "call_id": result.call_id}
    emit(data, as_json, lambda d: d["text"])


@cli.command("calls")
@options.json_output
@click.option("--limit", type=int, default=0, help="Also list the last N calls.")
@with_context
def calls_cmd(ctx: click.Context, as_json: bool, limit: int) -> None:
    """The call log: counts, tokens, cache hits, errors and cost, per model and stage.

    \b
    Examples:
      python -m pld calls
      python -m pld calls --limit 20 --json
    """
    from pld.llm.calls import list_calls, summarize_calls

    ws = ctx_workspace(ctx)
    data = summarize_calls(ws)
    if limit:
        data["recent"] = [
            {k: r[k] for k in ("id", "created_at", "model", "stage", "cache_hit", "attempt",
                               "input_tokens", "output_tokens", "latency_s", "error")}
            for r in list_calls(ws, limit=limit)
        ]

    def text(d: dict[str, Any]) -> str:
        t = d["total"]
        lines = [f"{t['calls']} calls, {t['cache_hits']} cache hits, {t['uncached']} uncached, "
                 f"{t['errors']} errors, "
                 f"{t['input_tokens']} in / {t['output_tokens']} out tokens, "
                 f"${t['cost_usd']:.4f} estimated", ""]
        lines.append(f"{'model':<40} {'stage':<12} {'calls':>6} {'hits':>6} {'errors':>6} "
                     f"{'in tok':>9} {'out tok':>8} {'cost $':>9}")
        for g in d["by_model_stage"]:
            lines.append(f"{g['model'][:40]:<40} {str(g['stage'])[:12]:<12} {g['calls']:>6} "
                         f"{g['cache_hits']:>6} {g['errors']:>6} {g['input_tokens']:>9} "
                         f"{g['output_tokens']:>8} {g['cost_usd']:>9.4f}")
        if d["by_run"]:
            lines += ["", f"{'run':>5} {'task':<16} {'kind':<16} {'status':<12} {'calls':>6} "
                          f"{'cost $':>9}"]
            lines += [f"{r['run_id']:>5} {str(r['task'])[:16]:<16} {str(r['kind'])[:16]:<16} "
                      f"{str(r['status'])[:12]:<12} {r['calls']:>6} {r['cost_usd']:>9.4f}"
                      for r in d["by_run"]]
        for r in d.get("recent", []):
            lines.append(f"#{r['id']} {r['created_at']} {r['model']} {r['stage']} "
                         f"hit={r['cache_hit']} {r['error'] or ''}")
        return "\n".join(lines)

    emit(data, as_json, text)


@cli.command("batches")
@click.option("--run", "run_id", type=int, default=None, help="Only the batches of this run.")
@click.option("--cancel", "cancel_id", type=int, default=None, metavar="ID",
              help="Cancel batch ID at its provider; what it finished lands when its command "
                   "runs again.")
@options.json_output
@with_context
def batches_cmd(ctx: click.Context, run_id: int | None, cancel_id: int | None,
                as_json: bool) -> None:
    """Provider batches of --batch runs: submitted, done and failed requests, and state.

    \b
    Examples:
      python -m pld batches
      python -m pld batches --run 12 --json
      python -m pld batches --cancel 3
    """
    from pld.llm import batch
    from pld.llm.batch_store import list_batches, progress_row

    ws = ctx_workspace(ctx)
    if cancel_id is not None:
        row = batch.cancel(ws, cancel_id)
        emit(progress_row(row), as_json,
             lambda d: f"batch {d['batch']} ({d['provider id']}): cancel asked of the provider")
        return
    rows = [progress_row(r) for r in list_batches(ws, run_id=run_id)]

    def text(d: dict[str, Any]) -> str:
        if not d["batches"]:
            return "no batches (python -m pld extract|consolidate|resolve|eval … --batch)"
        lines = [f"{'batch':>5} {'provider id':<28} {'model':<32} {'submitted':>9} {'done':>6} "
                 f"{'failed':>6} status"]
        lines += [f"{r['batch']:>5} {r['provider id'][:28]:<28} {r['model'][:32]:<32} "
                  f"{r['submitted']:>9} {r['done']:>6} {r['failed']:>6} {r['status']}"
                  + (" (landed)" if r["landed"] else "") for r in d["batches"]]
        return "\n".join(lines)

    emit({"batches": rows}, as_json, text)
