"""The root ``cli`` group, on which every command module registers its commands."""

from __future__ import annotations

from pathlib import Path

import click

from pld.workspace import default_path


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--workspace", "workspace", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="Workspace file (default: $PLD_WORKSPACE or data/workspace.db).")
@click.version_option(package_name=None, version=__import__("pld").__version__, prog_name="pld")
@click.pass_context
def cli(ctx: click.Context, workspace: Path | None) -> None:
    """PLD Studio: prompt-level distillation with people in the loop.

    A teacher model writes one rule per training example (extract), the rules are clustered
    (cluster) and merged into heuristics (consolidate) that people review; the approved
    heuristics become a student prompt that is scored (eval), improved (resolve) and exported.

    \b
    Examples:
      python -m pld load demo
      python -m pld run demo --teacher local/default --student local/default
      python -m pld review queue --as alice
      python -m pld --workspace team.db tasks --json
    """
    ctx.obj = {"path": workspace or default_path(), "ws": None}
