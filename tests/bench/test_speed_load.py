"""``bench/speed.py --only load``: writer processes on one workspace lose nothing, and the
figure checks what they recorded against the trail (behaviour only, never wall time)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import speed
from bench.figures import workspaces
from bench.figures.speed import load
from pld import review
from pld.identity import Identity
from pld.workspace import open_workspace


@pytest.fixture
def work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(workspaces, "WORK", tmp_path / "work")
    return tmp_path


def test_concurrent_writers_lose_nothing(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = work / "speed.json"

    assert speed.main(["--only", "load", "--seconds", "3", "--processes", "4",
                       "--out", str(out)]) == 0

    figure = json.loads(out.read_text())["load"]["concurrent_writers"]
    d = figure["detail"]
    assert (figure["value"], figure["target"], d["met"]) == (0, "== 0", True), d
    assert (d["processes"], d["seconds"]) == (4, 3.0)
    assert (d["lost_updates"], d["unrecorded_changes"], d["locked_errors"], d["other_errors"]) \
        == (0, 0, 0, 0)
    assert d["trail_ok"] and d["cpu"] and d["ops_per_s"] > 0
    # Every process acted, as itself, and its changes are in the trail.
    assert len(d["changes_per_process"]) == 4 and all(n > 0 for n in d["changes_per_process"])
    assert d["operations"] == d["changes"] + d["refused_stale"] + d["refused_four_eyes"] \
        + d["refused_other"]
    printed = capsys.readouterr().out
    assert "lost updates" in printed and "'database is locked' errors" in printed


def test_the_check_finds_a_lost_and_an_unrecorded_change(work: Path) -> None:
    path = workspaces.fresh_path("check.db")
    seeded = load._seed(path)
    hid = next(iter(seeded))
    with open_workspace(path) as ws:
        start = ws.query("SELECT max(id) + 1 AS n FROM reviews")[0]["n"]
        row = review.edit(ws, hid, "Texts saying maybe are yes.", Identity("writer 0"),
                          base_version=seeded[hid])
    told = {"who": "writer 0", "changes": [[hid, row["version"], "edit"]]}
    assert load._check(path, seeded, start, [told]) == {
        "lost_updates": 0, "unrecorded_changes": 0, "trail_ok": True, "trail_break": None}
    # Two processes told the same version succeeded: one of the two changes was lost.
    twice = {"who": "writer 1", "changes": [[hid, row["version"], "edit"]]}
    assert load._check(path, seeded, start, [told, twice])["lost_updates"] == 2
    assert load._check(path, seeded, start, [])["unrecorded_changes"] == 1
