"""Helpers every command shares: exit codes, the workspace, output, progress, options."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import click

from pld.errors import BadInput
from pld.llm.base import ConfigError, RuntimeCrashed
from pld.llm.budget import BudgetReached
from pld.workspace import Workspace, WorkspaceError, open_workspace

F = TypeVar("F", bound=Callable[..., Any])


def fail(code: int, message: str) -> None:
    """Print ``error: message`` on stderr and exit with ``code``."""
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def handles_errors(fn: F) -> F:
    """Map our exceptions to the exit-code contract: bad input 2, anything else 1."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from pld.llm.calls import CallFailed
        from pld.tasks.download import DownloadError

        try:
            return fn(*args, **kwargs)
        except (BadInput, ConfigError, WorkspaceError) as e:
            fail(2, str(e).splitlines()[0] if str(e) else type(e).__name__)
        except CallFailed as e:
            fail(1, f"LLM call failed (see llm_calls row {e.call_id}): {e}")
        except RuntimeCrashed as e:
            fail(1, str(e))
        except BudgetReached as e:
            fail(1, str(e))
        except DownloadError as e:
            fail(1, str(e).splitlines()[0])
        except KeyboardInterrupt:
            fail(1, "interrupted; run the same command again to resume")

    return wrapper  # type: ignore[return-value]


def ctx_workspace(ctx: click.Context) -> Workspace:
    """The workspace of ``--workspace``, opened on first use and closed when the command ends."""
    obj = ctx.find_root().obj
    if obj.get("ws") is None:
        obj["ws"] = open_workspace(obj["path"])
        ctx.find_root().call_on_close(obj["ws"].close)
    return obj["ws"]


def emit(data: dict[str, Any], as_json: bool, text: Callable[[dict[str, Any]], str]) -> None:
    """Print ``data`` as one JSON object with ``--json``, else as ``text(data)`` for people."""
    click.echo(json.dumps(data, indent=2, default=str) if as_json else text(data))


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


def model_option(name: str, help_text: str) -> Callable[[F], F]:
    """A required ``--NAME MODEL`` option (``--teacher``, ``--student``)."""
    return click.option(f"--{name}", name, required=True, metavar="MODEL", help=help_text)


def merge_option(fn: F) -> F:
    """``--merge all|by-label|medoid``: how consolidation turns a cluster into a heuristic."""
    return click.option(
        "--merge", type=click.Choice(["all", "by-label", "medoid"]), default="all",
        show_default=True,
        help="How a cluster becomes a heuristic: the teacher merges all its rules (the paper), "
             "or each label's rules apart (parts joined), or no teacher call: each label's "
             "most central rule (medoid), joined.")(fn)


def spend_options(fn: F) -> F:
    """``--batch``, ``--estimate-only`` and ``--max-cost USD`` of every command that calls a
    model."""
    fn = click.option(
        "--batch", "use_batch", is_flag=True,
        help="Send the uncached calls through the provider's batch API (anthropic/…, "
             "openai/…, openai-compatible servers with /v1/batches) at half the list price; "
             "answers within 24 h. Killed, the same command resumes by polling the same "
             "batches. $PLD_BATCH_POLL_S sets the poll interval (default 30).")(fn)
    fn = click.option(
        "--max-cost", "max_cost", type=float, default=None, metavar="USD",
        help="Stop cleanly before this command's spend would pass USD (list prices, "
             "pld/llm/pricing.py); finished work is kept: rerun with a higher limit to go "
             "on.")(fn)
    return click.option(
        "--estimate-only", is_flag=True,
        help="Print the calls, tokens and dollars this command would spend, per model, and "
             "stop without calling any model.")(fn)


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


def as_option(fn: F) -> F:
    """The required ``--as NAME`` of every action a person signs."""
    return click.option("--as", "who", required=True, metavar="NAME",
                        help="Your name; recorded in the audit trail.")(fn)


def check_model(model: str) -> None:
    """Refuse an unknown model string before any work starts (ConfigError, exit 2)."""
    from pld.llm.registry import parse_model

    parse_model(model)


def failed_before_note(d: dict[str, Any]) -> str:
    """The tail of a stage's summary line that says how many items stayed failed."""
    n = d.get("failed_before") or 0
    return f"; {n} failed before, kept as failed (--retry-failed asks them again)" if n else ""


NOISE = "noise"


def parse_cluster_ref(value: str, option: str) -> int | None:
    """A cluster id, or None for ``noise`` (the rules in no cluster)."""
    if value.strip().lower() == NOISE:
        return None
    try:
        return int(value)
    except ValueError:
        raise BadInput(f"{option}: expected a cluster id or '{NOISE}', got {value!r}") from None
