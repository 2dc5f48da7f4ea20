"""``pld.backup``: a consistent copy of a workspace, written only where it may be."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from pld import trail
from pld.backup import backup
from pld.errors import BadInput
from pld.workspace import SCHEMA_VERSION, Workspace, open_workspace
from tests.pipeline.test_student import RULES, add_heuristic, load_reviews


def test_the_copy_is_the_workspace_as_it_stood(ws: Workspace, tmp_path: Path) -> None:
    load_reviews(ws)
    add_heuristic(ws, RULES[0])
    out = tmp_path / "copy.db"

    b = backup(ws, out)

    assert (b.path, b.schema_version, b.size_bytes) == (out, SCHEMA_VERSION, out.stat().st_size)
    assert b.trail_head == trail.head(ws) and b.trail_head.id > 0
    # One self-contained file: no journal beside it, nothing left of the temporary copy.
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(("copy", ".copy"))) \
        == ["copy.db"]
    with open_workspace(out) as copy:
        assert trail.check_chain(copy) is None and trail.head(copy) == b.trail_head
        assert copy.query("SELECT text FROM heuristics") == [{"text": RULES[0]}]


def test_an_existing_file_is_replaced_only_with_force(ws: Workspace, tmp_path: Path) -> None:
    out = tmp_path / "copy.db"
    out.write_bytes(b"keep me")
    with pytest.raises(BadInput, match="already exists; pass --force"):
        backup(ws, out)
    assert out.read_bytes() == b"keep me"
    link = tmp_path / "link.db"
    link.symlink_to(tmp_path / "elsewhere.db")  # a dangling link is there too
    with pytest.raises(BadInput, match="already exists"):
        backup(ws, link)

    backup(ws, out, force=True)
    assert sqlite3.connect(out).execute("SELECT count(*) FROM schema_version").fetchone()[0]
    backup(ws, link, force=True)  # the link is replaced, not written through
    assert not link.is_symlink() and not (tmp_path / "elsewhere.db").exists()


@pytest.mark.parametrize("case", ["itself", "folder", "journal beside it"])
def test_what_is_never_overwritten(ws: Workspace, tmp_path: Path, case: str) -> None:
    out = {"itself": ws.path, "folder": tmp_path, "journal beside it": tmp_path / "o.db"}[case]
    if case == "journal beside it":
        out.write_bytes(b"")
        Path(f"{out}-wal").write_bytes(b"")
    with pytest.raises(BadInput):
        backup(ws, out, force=True)
    assert trail.check_chain(ws) is None


def test_a_served_workspace_backs_up_only_under_its_root(
        ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root, outside = tmp_path / "team", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "elink").symlink_to(outside)
    monkeypatch.setenv("PLD_ROOT", str(root))
    for bad in (outside / "copy.db", root / "elink" / "copy.db", "../copy.db"):
        with pytest.raises(BadInput, match="must be inside"):
            backup(ws, bad)
    assert list(outside.iterdir()) == []
    assert backup(ws, "copy.db").path == root / "copy.db"
