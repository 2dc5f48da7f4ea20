"""``backup``: a consistent copy of the live workspace (:mod:`pld.backup`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from pld.cli import options
from pld.cli.common import ctx_workspace, emit, with_context
from pld.cli.root import cli
from pld.errors import BadInput


@cli.command("backup")
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--force", is_flag=True,
              help="Replace OUT when it already exists (refused otherwise).")
@options.json_output
@with_context
def backup_cmd(ctx: click.Context, out: Path, force: bool, as_json: bool) -> None:
    """Copy the workspace to OUT, consistently, while the app and jobs go on writing.

    Uses SQLite's online backup: the copy holds every change committed before it started and
    none after. An existing OUT is refused unless --force; with PLD_ROOT set, OUT must be
    inside it, like a workspace file. Prints the copy's path, size, schema version and trail
    head. The copy is a workspace: python -m pld verify EXPORT_DIR --workspace OUT accepts it
    for exports written before the backup.

    \b
    Examples:
      python -m pld backup backups/team-2025-01-31.db
      python -m pld --workspace team.db backup team-copy.db --force --json
    """
    from pld.backup import backup

    try:
        b = backup(ctx_workspace(ctx), out, force=force)
    except OSError as e:  # the workspace is open already, so an OSError here is about OUT
        raise BadInput(f"{out}: cannot write the backup there ({e.strerror or e})") from e
    data = {"path": str(b.path), "source": str(b.source), "size_bytes": b.size_bytes,
            "schema_version": b.schema_version,
            "trail_head": {"id": b.trail_head.id, "hash": b.trail_head.hash}}

    def text(d: dict[str, Any]) -> str:
        head = d["trail_head"]
        return (f"copied {d['source']} to {d['path']}: {d['size_bytes']:,} bytes, "
                f"schema version {d['schema_version']}, trail head row {head['id']} "
                f"(sha256 {head['hash'][:16]}…)")

    emit(data, as_json, text)
