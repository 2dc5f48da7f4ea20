"""What the commands that run a pipeline stage share: refusing a bad model string before any
work, ``--estimate-only``, ``--max-cost`` and ``--batch``, progress on stderr, and the notes on
items that stayed failed and on clusters consolidation set aside."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import click

from pld.cli.common import emit
from pld.workspace import Workspace


def check_model(model: str) -> None:
    """Refuse an unknown model string before any work starts (ConfigError, exit 2)."""
    from pld.llm.registry import parse_model

    parse_model(model)


class Progress:
    """A one-line progress display on stderr, fed by the stages' ``on_progress(done, total)``."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.tty = sys.stderr.isatty()
        self.last = -1

    def __call__(self, done: int, total: int) -> None:
        if not total:
            return
        pct = int(100 * done / total)
        if self.tty:
            width = 30
            filled = int(width * done / total)
            click.echo(f"\r{self.label} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}",
                       err=True, nl=done >= total)
        elif pct // 10 != self.last // 10 or done >= total:
            click.echo(f"{self.label}: {done}/{total}", err=True)
        self.last = pct


@contextmanager
def spending(max_cost: float | None, priced: tuple[str, ...], use_batch: bool,
             batched: tuple[str, ...]) -> Iterator[None]:
    """Run a stage under ``--max-cost`` (for the ``priced`` models) and, with ``--batch``, in
    batch mode for the ``batched`` models, telling batch progress on stderr."""
    from pld.llm import batch, budget

    with budget.limit(max_cost, priced), batch.mode(
            use_batch, batched, say=lambda line: click.echo(line, err=True)):
        yield


def show_estimate(ws: Workspace, planned: Iterable[Any], what: str, as_json: bool) -> None:
    """Print what ``planned`` calls would cost (``--estimate-only``); nothing is called."""
    from pld.pipeline.estimate import estimate_text, summarize

    emit({"estimate": what, **summarize(ws, planned)}, as_json,
         lambda d: estimate_text(d, what))


def failed_before_note(d: dict[str, Any]) -> str:
    """The tail of a stage's summary line that says how many items stayed failed."""
    n = d.get("failed_before") or 0
    return f"; {n} failed before, kept as failed (--retry-failed asks them again)" if n else ""


def set_aside_note(d: dict[str, Any]) -> str:
    """The tail of consolidate's summary line on the clusters its evidence kept from a heuristic
    and the rules it left out."""
    aside, dropped = d.get("set_aside") or {}, d.get("dropped_rules") or {}
    note = ""
    if aside:
        note += (f"; {len(aside)} cluster(s) got no heuristic ("
                 + "; ".join(f"{k}: {v}" for k, v in aside.items()) + ")")
    if dropped:
        note += (f"; {sum(map(len, dropped.values()))} rule(s) left out for a negative "
                 "verified effect")
    return note
