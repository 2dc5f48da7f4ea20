"""``python -m pld`` (or ``pld``): the headless interface to everything the app does.

Exit codes: 0 ok, 2 bad input (one line naming the file, field or option), 1 other failure.
``--json`` prints exactly one JSON object on stdout.

Each module holds one group of commands and registers them on the root group of
:mod:`pld.cli.root`; :mod:`pld.cli.common` holds what they share.
"""

from __future__ import annotations

import signal

# Importing a command module registers its commands on ``cli``.
from pld.cli import (  # noqa: F401
    backup,
    clusters,
    conflicts,
    evals,
    heuristics,
    models,
    prompts,
    rules,
    run,
    signoff,
    tasks,
)
from pld.cli.root import cli

__all__ = ["cli", "main"]


def _terminate(signum: int, frame: object) -> None:
    # A cancelled background job (SIGTERM) ends like Ctrl-C: the run row says "interrupted"
    # at once and the next invocation resumes, instead of looking "running" until noticed.
    raise KeyboardInterrupt


def main() -> None:
    """Entry point of ``python -m pld`` and of the ``pld`` console script."""
    signal.signal(signal.SIGTERM, _terminate)
    # No prog_name: click names the program as it was called (``python -m pld`` or ``pld``).
    cli()
