"""The export ledger: a witness of the audit trail kept outside the workspace.

The hash chain (:mod:`pld.trail`) shows an edited or deleted row in its middle, but not its
newest rows deleted: what is left is still a consistent chain. So every export appends one line
(JSON) to a ledger file outside the workspace: the workspace, task and version, which chain it is
(the hash of the trail's first row), the chain's head right after the export was recorded (its
row id and hash), the manifest's sha256 and the time. :func:`check` proves every head a ledger
witnessed for this chain (or for this workspace file, so a chain rewritten from its first row
still counts) is still in it with the same hash, and names the first entry that is not: rows
deleted from the end of the trail after an export, or a trail rewritten after it.

What it covers is what it witnessed, and only while the ledger is kept where the workspace's
writers cannot rewrite it. Rows written after the last export and then deleted, and rows deleted
before any export was written, leave no trace in it.

The default ledger is ``ledger.jsonl`` next to the export folder (in the folder above it), or
``$PLD_ROOT/exports/ledger.jsonl`` on a served app. The file is only ever appended to (one
``write`` of a whole line, ``O_APPEND``), never through a link.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from pld import trail
from pld.errors import BadInput
from pld.served_paths import EXPORTS, confine, served_root
from pld.workspace import Workspace, now

LEDGER_FILE = "ledger.jsonl"


def default_path(out: Path) -> Path:
    """The ledger an export to ``out`` appends to when none is named: one per served app under
    its exports folder, else ``ledger.jsonl`` in the folder above ``out``."""
    root = served_root()
    if root is not None:
        return root / EXPORTS / LEDGER_FILE
    return out.resolve().parent / LEDGER_FILE


def chain_root(ws: Workspace) -> str:
    """The hash of the trail's first row: which chain a ledger entry belongs to."""
    rows = ws.query("SELECT row_hash FROM reviews ORDER BY id LIMIT 1")
    return rows[0]["row_hash"] if rows else trail.GENESIS


def entry(ws: Workspace, *, task: str, version: int, head: trail.Link, manifest_sha256: str,
          prompt_sha256: str, out: str, who: str) -> dict[str, Any]:
    """One ledger line: the export and the chain's head right after it was recorded."""
    return {"workspace": str(Path(ws.path).resolve()), "task": task, "version": version,
            "trail_root": chain_root(ws), "head_row_id": head.id, "head_hash": head.hash,
            "manifest_sha256": manifest_sha256, "prompt_sha256": prompt_sha256, "out": out,
            "who": who, "exported_at": now()}


class Ledger:
    """A ledger file open for appending. Opened before an export writes anything, so that a
    ledger that cannot be written refuses the export instead of leaving it unwitnessed."""

    def __init__(self, path: str | Path) -> None:
        # Confined like the export folder when an app serves a team (PLD_ROOT).
        self.path = confine(path, "the ledger", EXPORTS)
        if self.path.is_symlink():
            raise BadInput(f"{self.path}: the ledger is a symbolic link; give the real file")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd: int | None = os.open(
                self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        except OSError as e:
            raise BadInput(f"{self.path}: cannot append to the ledger "
                           f"({e.strerror or e})") from e

    def append(self, line: dict[str, Any]) -> None:
        """Append ``line`` as one JSON line and flush it to disk."""
        assert self._fd is not None, "the ledger is closed"
        data = (json.dumps(line, ensure_ascii=False, sort_keys=True) + "\n").encode("utf-8")
        os.write(self._fd, data)  # one write with O_APPEND: concurrent exports never interleave
        os.fsync(self._fd)

    def close(self) -> None:
        """Close the file (again is harmless)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


@dataclass(frozen=True)
class LedgerCheck:
    """The outcome of :func:`check`: how many entries were checked, and the first that failed
    (None when every one holds)."""

    checked: int
    broken: str | None


def _describe(n: int, e: dict[str, Any]) -> str:
    return (f"ledger line {n} (the export of {e.get('task')} v{e.get('version')} at "
            f"{e.get('exported_at')} to {e.get('out')})")


def _failure(ws: Workspace, root: str, n: int, e: dict[str, Any]) -> str | None:
    """Why entry ``e`` (line ``n``) no longer holds in a chain whose first row has hash
    ``root``, or None."""
    head_id, head_hash = e.get("head_row_id"), e.get("head_hash")
    if not isinstance(head_id, int) or not isinstance(head_hash, str):
        return f"{_describe(n, e)}: has no chain head (the ledger was edited)"
    if e.get("trail_root") != root:
        return (f"{_describe(n, e)}: the trail's first row is not the one it witnessed (the "
                "whole trail was rewritten after that export, or another workspace replaced "
                "this file)")
    row = trail.get_row(ws, head_id)
    if row is None:
        return (f"{_describe(n, e)}: the trail row {head_id} it witnessed is gone (rows were "
                "deleted from the end of the trail after that export)")
    if row["row_hash"] != head_hash:
        return (f"{_describe(n, e)}: trail row {head_id} no longer has the hash it witnessed "
                f"({head_hash[:12]}…; the trail was rewritten after that export)")
    return None


def check(ws: Workspace, path: str | Path, manifest_sha256: str) -> LedgerCheck:
    """Check every entry of the ledger at ``path`` that belongs to ``ws``'s chain, names its
    file or names the manifest ``manifest_sha256``: the chain must still start with the row it
    witnessed, and its head must still be in the chain with its hash. Entries of other
    workspaces are skipped; a ledger with no entry for this one fails.
    :class:`BadInput` when there is no such file."""
    p = Path(path)
    if not p.is_file():
        raise BadInput(f"--ledger {p}: no such ledger file")
    root, checked = chain_root(ws), 0
    # Its file too: a chain rewritten from its first row is still this workspace's.
    here = str(Path(ws.path).resolve())
    with p.open(encoding="utf-8") as f:
        for n, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            try:
                e = json.loads(raw)
            except ValueError:
                return LedgerCheck(checked, f"ledger line {n}: not valid JSON (the ledger was "
                                            "edited)")
            if not isinstance(e, dict):
                return LedgerCheck(checked, f"ledger line {n}: not a JSON object (the ledger "
                                            "was edited)")
            if (e.get("trail_root") != root and e.get("manifest_sha256") != manifest_sha256
                    and e.get("workspace") != here):
                continue  # another workspace's export
            checked += 1
            failure = _failure(ws, root, n, e)
            if failure is not None:
                return LedgerCheck(checked, failure)
    if not checked:
        return LedgerCheck(0, f"ledger {p} holds no entry for this workspace's trail or this "
                              "manifest (give the ledger its exports appended to)")
    return LedgerCheck(checked, None)
