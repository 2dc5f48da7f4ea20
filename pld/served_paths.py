"""Where a shared app may read and write: under ``$PLD_ROOT`` when it is set.

A reviewer types the workspace file and the export folder into the app. When the app serves a
team (``PLD_ROOT`` set), those paths must stay inside it: workspaces anywhere under it, exports
under ``$PLD_ROOT/exports``. Paths are resolved first, so ``..`` and symbolic links that lead
outside are refused too. Without ``PLD_ROOT`` (one person on their own machine) any path works.
"""

from __future__ import annotations

import os
from pathlib import Path

from pld.errors import BadInput

EXPORTS = "exports"


def served_root() -> Path | None:
    """``$PLD_ROOT`` resolved, or None when the app is not serving a team."""
    root = os.environ.get("PLD_ROOT", "").strip()
    return Path(root).resolve() if root else None


def confine(path: str | Path, what: str, sub: str = "") -> Path:
    """``path`` when it may be used for ``what`` ("the workspace", "the export folder"),
    resolved; :class:`BadInput` naming the allowed folder when it leads outside it."""
    root = served_root()
    if root is None:
        return Path(path)
    allowed = root / sub if sub else root
    full = Path(path) if Path(path).is_absolute() else root / path
    resolved = full.resolve()
    if not resolved.is_relative_to(allowed):
        raise BadInput(f"{path}: {what} must be inside {allowed} on this server (PLD_ROOT)")
    return resolved
