"""Paths typed into a shared app stay under ``$PLD_ROOT``."""

from __future__ import annotations

from pathlib import Path

import pytest

from pld.errors import BadInput
from pld.served_paths import EXPORTS, confine


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


def test_the_cli_export_is_confined_like_the_app(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    # Before: with PLD_ROOT set, the CLI wrote through a symlinked folder under exports/.
    from click.testing import CliRunner

    from pld.cli import cli

    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / EXPORTS).mkdir(parents=True)
    outside.mkdir()
    (root / EXPORTS / "elink").symlink_to(outside)
    monkeypatch.setenv("PLD_ROOT", str(root))
    runner = CliRunner()
    assert runner.invoke(cli, ["--workspace", str(root / "ws.db"), "load", "demo"]).exit_code == 0
    got = runner.invoke(cli, ["--workspace", str(root / "ws.db"), "export", "demo", "--out",
                              str(root / EXPORTS / "elink" / "sub")])
    assert got.exit_code == 2 and "must be inside" in got.output
    assert not (outside / "sub").exists()


def test_the_cli_workspace_is_confined_like_the_app(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from pld.cli import cli

    (tmp_path / "root").mkdir()
    monkeypatch.setenv("PLD_ROOT", str(tmp_path / "root"))
    got = CliRunner().invoke(cli, ["--workspace", str(tmp_path / "elsewhere.db"), "tasks"])
    assert got.exit_code == 2 and "must be inside" in got.output
    assert not (tmp_path / "elsewhere.db").exists()
