"""Task registry, data folders, statuses and loading built-in tasks into a workspace."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pld.errors import BadInput
from pld.tasks import (
    BUILTIN_TASKS,
    REPO_ROOT,
    data_dir,
    data_dirs,
    download_dir,
    get_task,
    load_task,
    task_statuses,
)
from pld.tasks.contract_nli import ContractNLI
from pld.tasks.store import examples, task_info
from pld.workspace import Workspace

SHARED = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture
def data() -> Path:
    # CI has ../shared/data: a missing folder is a failure, never a skip.
    assert SHARED.is_dir(), f"benchmark data missing: {SHARED}"
    return SHARED


def test_registry() -> None:
    assert BUILTIN_TASKS == ["stereoset", "stereoset-stereotype", "contract-nli", "logiqa",
                             "custom", "demo"]
    assert [get_task(n).name for n in BUILTIN_TASKS] == BUILTIN_TASKS
    with pytest.raises(BadInput, match="unknown task 'nope'; built-in tasks: stereoset, "):
        get_task("nope")
    assert isinstance(get_task("contract-nli", context_tokens=800), ContractNLI)
    with pytest.raises(BadInput, match="unknown option"):
        get_task("logiqa", context_tokens=800)


def test_data_dirs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, data: Path) -> None:
    monkeypatch.delenv("PLD_DATA_DIR", raising=False)
    monkeypatch.chdir(tmp_path)  # the cwd must not matter
    assert data_dir() == data
    assert data_dirs() == [data, REPO_ROOT / "data"]
    assert download_dir() == REPO_ROOT / "data"
    monkeypatch.setenv("PLD_DATA_DIR", str(tmp_path))
    assert data_dir() == tmp_path and data_dirs() == [tmp_path, REPO_ROOT / "data"]


def test_task_statuses_json(data: Path) -> None:
    got = task_statuses([data])
    assert [s["name"] for s in got] == BUILTIN_TASKS
    json.dumps(got)
    by = {s["name"]: s for s in got}
    assert by["logiqa"]["available"] and not by["logiqa"]["complete"]
    assert by["logiqa"]["pool_sizes"] == {"train": 651, "val": 651, "test": 651}
    assert by["logiqa"]["split_sizes"] == {"train": 60, "val": 40, "test": 100}
    assert by["demo"]["split_sizes"] == {"train": 50, "val": 20, "test": 30}
    assert by["logiqa"]["labels"] == ["A", "B", "C", "D"]
    assert by["contract-nli"]["pool_sizes"] == {"train": 1887, "val": 1887, "test": 2091}
    assert by["stereoset"]["complete"] and by["demo"]["complete"]
    assert not by["custom"]["available"] and "--file" in by["custom"]["notes"]
    assert by["stereoset"]["default_sizes"] == {"train": 60, "val": 40, "test": 100}
    for s in got:
        assert s["description"] and {"notes", "files", "pools"} <= set(s)
    missing = {s["name"]: s for s in task_statuses([data / "does-not-exist"])}
    assert not missing["logiqa"]["available"] and "download logiqa" in missing["logiqa"]["notes"]


def test_load_task_into_workspace(ws: Workspace, data: Path) -> None:
    counts = load_task(ws, "logiqa", seed=3, data_dir=[data])
    assert counts == {"train": 60, "val": 40, "test": 100}
    info = task_info(ws, "logiqa")
    assert info.labels == ["A", "B", "C", "D"] and info.kind == "benchmark"
    assert info.params["seed"] == 3 and info.params["complete"] is False
    assert "Eval.txt" in info.source and "Test.txt" in info.source
    expected = get_task("logiqa").load_splits([data], seed=3)
    rows = examples(ws, "logiqa")
    assert [(r["ext_id"], r["split"], r["text"], r["label"]) for r in rows] == [
        (e.ext_id, e.split, e.text, e.label) for e in expected]
    # Same request again: nothing changes. Bigger train: val and test stay, train grows.
    assert load_task(ws, "logiqa", seed=3, data_dir=[data]) == counts
    grown = load_task(ws, "logiqa", n_train=80, seed=3, data_dir=[data])
    assert grown == {"train": 80, "val": 40, "test": 100}
    before = ws.query("SELECT * FROM examples ORDER BY id")
    with pytest.raises(BadInput, match="would change split"):
        load_task(ws, "logiqa", seed=4, data_dir=[data])
    assert ws.query("SELECT * FROM examples ORDER BY id") == before


def test_load_task_options_and_missing_data(ws: Workspace, data: Path, tmp_path: Path) -> None:
    counts = load_task(ws, "contract-nli", n_train=5, n_val=5, n_test=5, data_dir=[data],
                       options={"context_tokens": 700})
    assert counts == {"train": 5, "val": 5, "test": 5}
    assert task_info(ws, "contract-nli").params["context_tokens"] == 700
    assert all(len(r["text"]) <= 2800 for r in examples(ws, "contract-nli"))
    with pytest.raises(BadInput, match=r"logiqa: logiqa/Eval\.txt, logiqa/Test\.txt not found"):
        load_task(ws, "logiqa", data_dir=[tmp_path])
    assert not ws.query("SELECT * FROM tasks WHERE name = 'logiqa'")
