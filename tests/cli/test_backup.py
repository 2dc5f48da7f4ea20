"""``python -m pld backup OUT.db`` on a workspace another process is writing to: the copy is a
workspace that ``verify`` accepts (real subprocesses, as in tests/cli/test_contract.py)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from pld import review, trail
from pld.workspace import Workspace, open_workspace
from tests.cli.test_contract import ROOT, pld
from tests.pipeline import test_verify
from tests.pipeline.test_student import add_heuristic

exported = test_verify.exported  # an approved export of the workspace, before the writer

# Edits one draft again and again, as a reviewer or a job would, until told to stop.
WRITER = """
import sys
from pathlib import Path
from pld import review
from pld.identity import Identity
from pld.workspace import open_workspace

ws, hid = open_workspace(sys.argv[1]), int(sys.argv[2])
stop, ready = Path(sys.argv[3]), Path(sys.argv[4])
n = 0
while not stop.exists():
    version = ws.query("SELECT version FROM heuristics WHERE id = ?", [hid])[0]["version"]
    review.edit(ws, hid, f"If the review says draft {n}, then the label is neutral.",
                Identity("wendy"), base_version=version)
    n += 1
    ready.touch()
print(n)
"""


def _wait_for(path: Path, writer: subprocess.Popen[str]) -> None:
    for _ in range(600):
        if path.exists():
            return
        assert writer.poll() is None, writer.communicate()
        time.sleep(0.05)
    raise AssertionError("the writer never wrote")


def test_a_backup_taken_while_another_process_writes_verifies(ws: Workspace, exported: Path,
                                                              tmp_path: Path) -> None:
    draft = add_heuristic(ws, "If the review says meh, then the label is neutral.",
                          status="draft")
    stop, ready, out = tmp_path / "stop", tmp_path / "ready", tmp_path / "backup.db"
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(ws.path), str(draft), str(stop), str(ready)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(ready, writer)
        r = pld("backup", str(out), "--json", ws=ws.path)
        during = trail.head(ws)
    finally:
        stop.touch()
        stdout, stderr = writer.communicate(timeout=60)
    assert writer.returncode == 0, stderr
    assert r.returncode == 0, r.stderr
    copied = json.loads(r.stdout)
    assert (copied["path"], copied["size_bytes"]) == (str(out), out.stat().st_size)

    # The writer went on while the copy was taken; the copy is one moment of the same chain.
    edits = len([h for h in review.history(ws, draft) if h["action"] == "edit"])
    assert edits == int(stdout) > 0
    head = copied["trail_head"]
    assert 0 < head["id"] <= during.id < trail.head(ws).id
    assert trail.get_row(ws, head["id"])["row_hash"] == head["hash"]  # type: ignore[index]
    with open_workspace(out) as copy:
        assert trail.check_chain(copy) is None
        assert trail.head(copy) == trail.Link(head["id"], head["hash"])

    v = pld("verify", str(exported), "--workspace", str(out), ws=ws.path)
    assert v.returncode == 0, v.stdout + v.stderr
    assert f"verified: {exported}" in v.stdout


def test_backup_refuses_to_overwrite_without_force(ws: Workspace, tmp_path: Path) -> None:
    out = tmp_path / "backup.db"
    out.write_bytes(b"yesterday's copy")
    r = pld("backup", str(out), ws=ws.path)
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert "already exists; pass --force" in r.stderr
    assert out.read_bytes() == b"yesterday's copy"
    r = pld("backup", str(out), "--force", ws=ws.path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"copied {ws.path} to {out}: ")
    assert "schema version" in r.stdout and "trail head row" in r.stdout
