"""What every command shares: the exit-code contract, its workspace, and its output.

The options commands share are in :mod:`pld.cli.options`, what stage commands share (model
checks, cost estimates, spend limits, progress) in :mod:`pld.cli.stages`, and the reading of
values people type in :mod:`pld.cli.inputs`."""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import click

from pld.errors import BadInput
from pld.identity import AUTO, Identity
from pld.llm.base import ConfigError, RuntimeCrashed
from pld.llm.budget import BudgetReached
from pld.served_paths import confine
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


def with_context(fn: F) -> F:
    """The click context as the command's first argument, and its errors mapped to the exit
    codes (:func:`handles_errors`): what every command that reads its context takes."""
    return click.pass_context(handles_errors(fn))


def ctx_workspace(ctx: click.Context) -> Workspace:
    """The workspace of ``--workspace``, opened on first use and closed when the command ends."""
    obj = ctx.find_root().obj
    if obj.get("ws") is None:
        obj["ws"] = open_workspace(confine(obj["path"], "the workspace file"))
        ctx.find_root().call_on_close(obj["ws"].close)
    return obj["ws"]


def task_workspace(ctx: click.Context, task: str) -> Workspace:
    """The workspace, once TASK is known to be loaded in it (:class:`BadInput` otherwise), so a
    listing of an unknown task is an error rather than an empty list."""
    from pld.tasks.store import task_info

    ws = ctx_workspace(ctx)
    task_info(ws, task)
    return ws


def acting(ctx: click.Context, name: str | None) -> Identity | None:
    """Who acts in this command: the one place a name typed on the command line becomes an
    :class:`~pld.identity.Identity`. ``--as NAME`` given: NAME, self-declared. Else, in a job
    the app started, whoever started it, with their identity kind (its ``$PLD_JOB_TOKEN``,
    :func:`pld.jobs.job_identity`; a token no job was started with is refused). Else None.
    :class:`BadInput` for a name nobody may act under."""
    from pld.jobs import JOB_TOKEN_ENV, job_identity

    if name is not None:
        return Identity(name)
    token = os.environ.get(JOB_TOKEN_ENV)
    return job_identity(ctx_workspace(ctx), token) if token else None


def signed_by(ctx: click.Context, name: str | None) -> Identity:
    """:func:`acting`, for a command that needs someone to sign: :class:`BadInput` when
    nobody acts."""
    who = acting(ctx, name)
    if who is None:
        raise BadInput("--as: a reviewer name is required")
    return who


def automatic(name: str | None) -> Identity | None:
    """``--auto-approve-as NAME`` or ``--auto-accept-as NAME``: NAME as an identity of kind
    ``auto`` (benchmarks), recorded as such on every sign-off it makes; None without one."""
    return None if name is None else Identity(name, AUTO)


def emit(data: dict[str, Any], as_json: bool, text: Callable[[dict[str, Any]], str]) -> None:
    """Print ``data`` as one JSON object with ``--json``, else as ``text(data)`` for people."""
    click.echo(json.dumps(data, indent=2, default=str) if as_json else text(data))


def history_lines(events: Iterable[dict[str, Any]]) -> list[str]:
    """The ``history:`` lines of a reviewed text (a heuristic, the preamble), oldest first."""
    return ["history:", *(f"  {ev['created_at']} {ev['who']} ({ev.get('identity_kind')}) "
                          f"{ev['action']} {ev.get('comment') or ''}" for ev in events)]
