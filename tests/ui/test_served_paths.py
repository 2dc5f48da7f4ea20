"""Paths typed into a shared app stay under ``$PLD_ROOT``."""

from __future__ import annotations

from pathlib import Path

import pytest

from pld.errors import BadInput
from pld.ui.served_paths import EXPORTS, confine


def test_without_a_root_any_path_is_used_as_given(monkeypatch: pytest.MonkeyPatch,
                                                  tmp_path: Path) -> None:
    monkeypatch.delenv("PLD_ROOT", raising=False)
    assert confine("/etc/x.db", "the workspace file") == Path("/etc/x.db")


def test_a_served_app_keeps_paths_under_its_root(monkeypatch: pytest.MonkeyPatch,
                                                 tmp_path: Path) -> None:
    # Before: any workspace or export path could be typed into the app.
    root = tmp_path / "team"
    (root / EXPORTS).mkdir(parents=True)
    monkeypatch.setenv("PLD_ROOT", str(root))
    assert confine("ws.db", "the workspace file") == root / "ws.db"
    assert confine(root / EXPORTS / "v1", "the export folder", EXPORTS) == root / EXPORTS / "v1"
    for bad, sub in (("/etc/passwd.db", ""), ("../elsewhere.db", ""),
                     (str(root / "ws.db"), EXPORTS), (str(root / EXPORTS / ".." / "x"), EXPORTS)):
        with pytest.raises(BadInput, match="must be inside"):
            confine(bad, "the path", sub)
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / EXPORTS / "link").symlink_to(outside)
    with pytest.raises(BadInput, match="must be inside"):
        confine(root / EXPORTS / "link" / "v1", "the export folder", EXPORTS)
