"""A consistent copy of a live workspace (``python -m pld backup OUT.db``).

SQLite's online backup API copies the pages of one read snapshot in a single step, so the copy
holds every transaction that had committed when it started and none of the rest, while the app
and jobs go on writing (a WAL reader blocks no writer). The copy is written to a temporary file
beside OUT, checked, switched to a single-file journal (no ``-wal`` beside it) and only then
renamed to OUT: a failed backup leaves no half-written file, and the rename replaces a link
rather than writing through it. Opened as a workspace, the copy is the workspace as it stood:
``verify EXPORT_DIR --workspace OUT.db`` accepts it for exports written before the backup.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
from dataclasses import dataclass
from pathlib import Path

from pld import trail
from pld.errors import BadInput
from pld.served_paths import confine
from pld.workspace import Workspace

SIDECARS = ("-wal", "-shm", "-journal")  # SQLite's files beside a database


@dataclass(frozen=True)
class Backup:
    """What a backup copied: the copy's path and size, its schema version and trail head."""

    path: Path
    source: Path
    size_bytes: int
    schema_version: int
    trail_head: trail.Link


def _target(ws: Workspace, out: str | Path, force: bool) -> Path:
    """OUT, confined under ``$PLD_ROOT`` like a workspace file; :class:`BadInput` when it is
    the workspace itself, exists without ``force``, or looks open (a journal beside it)."""
    path = confine(out, "the backup file")
    if path.resolve() == Path(ws.path).resolve():
        raise BadInput(f"{out}: that is the workspace itself; give another file")
    if path.is_dir():
        raise BadInput(f"{out}: is a folder; give a file name such as {Path(out) / 'backup.db'}")
    if (path.exists() or path.is_symlink()) and not force:
        raise BadInput(f"{out}: already exists; pass --force to overwrite it")
    open_beside = [s for s in SIDECARS if Path(f"{path}{s}").exists()]
    if open_beside:
        # Replacing a database whose journal is still beside it would let SQLite replay that
        # journal into the copy the next time it is opened.
        raise BadInput(f"{out}: {path.name}{open_beside[0]} is beside it (the file is open, or "
                       "was not closed cleanly); close it or choose another name")
    if not path.parent.is_dir():
        raise BadInput(f"{out}: no such folder {path.parent}")
    return path


def _copy(source: Path, tmp: Path) -> None:
    """The online backup of ``source`` into ``tmp``, checked and left as one file."""
    src = sqlite3.connect(source, timeout=30)
    dst = sqlite3.connect(tmp, isolation_level=None)
    try:
        src.backup(dst)  # all pages in one step: one snapshot, however busy the source is
        status = dst.execute("PRAGMA quick_check").fetchone()[0]
        if status != "ok":
            raise BadInput(f"{source}: the copy failed SQLite's check ({status}); not written")
        # The source is in WAL mode; a copy meant to be moved around is one self-contained file.
        dst.execute("PRAGMA journal_mode = DELETE")
    finally:
        dst.close()
        src.close()


def _describe(path: Path, source: Path) -> Backup:
    """Read back what the copy holds, from the copy itself."""
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        version = int(conn.execute("SELECT max(version) FROM schema_version").fetchone()[0] or 0)
        last = conn.execute("SELECT id, row_hash FROM reviews ORDER BY id DESC LIMIT 1").fetchone()
    finally:
        conn.close()
    head = trail.Link(int(last[0]), last[1]) if last else trail.Link(0, trail.GENESIS)
    return Backup(path, source, path.stat().st_size, version, head)


def backup(ws: Workspace, out: str | Path, *, force: bool = False) -> Backup:
    """Copy the workspace ``ws`` to ``out`` while others may be writing to it (see the module
    docstring). ``force``: replace an existing ``out``. Raises :class:`BadInput` for an ``out``
    that may not be written (outside ``$PLD_ROOT``, the workspace itself, already there without
    ``force``, open); :class:`OSError` when the folder cannot be written."""
    path = _target(ws, out, force)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        _copy(Path(ws.path), tmp)
        os.replace(tmp, path)
    finally:
        for leftover in (tmp, *(Path(f"{tmp}{s}") for s in SIDECARS)):
            leftover.unlink(missing_ok=True)
    return _describe(path, Path(ws.path))
