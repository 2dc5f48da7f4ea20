"""Helpers every command shares: exit codes, the workspace, output, progress, options."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from pld.errors import BadInput
from pld.llm.base import ConfigError
from pld.workspace import Workspace, WorkspaceError, open_workspace

F = TypeVar("F", bound=Callable[..., Any])


def _fail(code: int, message: str) -> None:
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
            _fail(2, str(e).splitlines()[0] if str(e) else type(e).__name__)
        except CallFailed as e:
            _fail(1, f"LLM call failed (see llm_calls row {e.call_id}): {e}")
        except DownloadError as e:
            _fail(1, str(e).splitlines()[0])
        except KeyboardInterrupt:
            _fail(1, "interrupted; run the same command again to resume")

    return wrapper  # type: ignore[return-value]


def _ws(ctx: click.Context) -> Workspace:
    obj = ctx.find_root().obj
    if obj.get("ws") is None:
        obj["ws"] = open_workspace(obj["path"])
        ctx.find_root().call_on_close(obj["ws"].close)
    return obj["ws"]


def _emit(data: dict[str, Any], as_json: bool, text: Callable[[dict[str, Any]], str]) -> None:
    click.echo(json.dumps(data, indent=2, default=str) if as_json else text(data))


class _Progress:
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


def _model_option(name: str, help_text: str) -> Callable[[F], F]:
    return click.option(f"--{name}", name, required=True, metavar="MODEL", help=help_text)


def _as_option(fn: F) -> F:
    return click.option("--as", "who", required=True, metavar="NAME",
                        help="Your name; recorded in the audit trail.")(fn)


def _check_model(model: str) -> None:
    from pld.llm.registry import parse_model

    parse_model(model)


def _failed_before_note(d: dict[str, Any]) -> str:
    n = d.get("failed_before") or 0
    return f"; {n} failed before, kept as failed (--retry-failed asks them again)" if n else ""


NOISE = "noise"


def _cluster_ref(value: str, option: str) -> int | None:
    """A cluster id, or None for ``noise`` (the rules in no cluster)."""
    if value.strip().lower() == NOISE:
        return None
    try:
        return int(value)
    except ValueError:
        raise BadInput(f"{option}: expected a cluster id or '{NOISE}', got {value!r}") from None
