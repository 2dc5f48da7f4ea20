"""Built-in tasks, where their data is found, and loading a task into a workspace.

Data folders searched, in order: ``$PLD_DATA_DIR`` if set, else ``../shared/data`` next to the
repository root when it exists, else the repository's ``data/``; the repository's ``data/``
(where ``python -m pld download`` puts upstream files) is always searched after the first.
Paths are resolved from the package location, never from the current directory.
"""

from __future__ import annotations

import inspect
import os
from pathlib import Path
from typing import Any

from pld.authorship import TEMPLATE, UNNAMED_UPLOAD, Authorship
from pld.errors import BadInput
from pld.identity import Identity
from pld.tasks.base import SHAPES, DataDir, Size, Task, TaskStatus, as_roots, resolve_counts
from pld.tasks.contract_nli import ContractNLI
from pld.tasks.custom import CustomTask
from pld.tasks.demo import DemoTask
from pld.tasks.logiqa import LogiQA
from pld.tasks.stereoset import StereoSetDomain, StereoSetStereotype
from pld.tasks.store import Example, save_task
from pld.workspace import Workspace

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILTIN_TASKS = ["stereoset", "stereoset-stereotype", "contract-nli", "logiqa", "custom", "demo"]
_CLASSES: dict[str, type[Task]] = {
    "stereoset": StereoSetDomain, "stereoset-stereotype": StereoSetStereotype,
    "contract-nli": ContractNLI, "logiqa": LogiQA, "custom": CustomTask, "demo": DemoTask,
}

__all__ = [
    "BUILTIN_TASKS", "REPO_ROOT", "Task", "data_dir", "data_dirs", "download_dir", "get_task",
    "load_custom", "load_task", "task_statuses",
]


def download_dir() -> Path:
    """The repository's ``data/`` folder, where downloads land."""
    return REPO_ROOT / "data"


def data_dir() -> Path:
    """The primary data folder: ``$PLD_DATA_DIR``, else ``../shared/data``, else ``data/``."""
    env = os.environ.get("PLD_DATA_DIR")
    if env:
        return Path(env).expanduser()
    shared = REPO_ROOT.parent / "shared" / "data"
    return shared if shared.is_dir() else download_dir()


def data_dirs() -> list[Path]:
    """Folders searched for data files, in order: :func:`data_dir`, then ``data/``."""
    first, dl = data_dir(), download_dir()
    return [first] if first.resolve() == dl.resolve() else [first, dl]


def get_task(name: str, **params: Any) -> Task:
    """A built-in task by name (``params`` e.g. ``context_tokens`` for contract-nli)."""
    cls = _CLASSES.get(name)
    if cls is None:
        raise BadInput(f"unknown task {name!r}; built-in tasks: {', '.join(BUILTIN_TASKS)}")
    unknown = sorted(set(params) - set(inspect.signature(cls).parameters))
    if unknown:
        raise BadInput(f"task {name}: unknown option(s) {', '.join(unknown)}")
    return cls(**params)


def _default_split_sizes(task: Task, status: TaskStatus) -> dict[str, int]:
    sizes: dict[str, int] = {}
    for pool in status.pools:
        counts = resolve_counts(pool.size, pool.splits, {}, task.default_sizes,
                                caps=task.default_caps)
        fixed = sum(c for c in counts.values() if c is not None)
        for split, c in counts.items():
            sizes[split] = c if c is not None else max(pool.size - fixed, 0)
    return {s: sizes[s] for s in ("train", "val", "test") if s in sizes}


def task_statuses(data_dir: DataDir = None) -> list[dict[str, Any]]:
    """One JSON-ready dict per built-in task, for ``python -m pld tasks --json``.

    Keys: name, kind, labels, description, available, complete, files, missing, notes, pools
    (splits, size, files, label_counts), pool_sizes (the pool each split is drawn from),
    default_sizes (as configured) and split_sizes (what ``load`` gives with no size options).
    """
    roots = as_roots(data_dir)
    out = []
    for name in BUILTIN_TASKS:
        task = get_task(name)
        st = task.status(roots)
        d = st.to_dict()
        out.append({"name": name, "kind": task.kind, "labels": list(task.labels),
                    "description": task.description, "default_sizes": dict(task.default_sizes),
                    "split_sizes": _default_split_sizes(task, st), **d})
    return out


def _save(ws: Workspace, task: Task, examples: list[Example], *, description: str, source: str,
          params: dict[str, Any], author: Authorship | None) -> dict[str, int]:
    # A reload with another seed or other sizes could put an example into a different split
    # than the one it already has, mixing training and held-out data: refuse that.
    have = {r["ext_id"]: r["split"] for r in ws.query(
        "SELECT ext_id, split FROM examples WHERE task = ?", [task.name])}
    moved = [e for e in examples if e.ext_id in have and have[e.ext_id] != e.split]
    if moved:
        e = moved[0]
        raise BadInput(
            f"task {task.name}: already loaded in {ws.path} with other splits ({len(moved)} "
            f"examples would change split, e.g. {e.ext_id} from {have[e.ext_id]} to {e.split}); "
            "use the seed and sizes it was loaded with, or a new workspace")
    return save_task(ws, name=task.name, kind=task.kind, labels=list(task.labels),
                     description=description, source=source, params=params, examples=examples,
                     author=author)


def load_task(
    ws: Workspace, name: str, *, n_train: Size = None, n_val: Size = None, n_test: Size = None,
    seed: int = 0, data_dir: DataDir = None, options: dict[str, Any] | None = None,
    who: Identity | None = None,
) -> dict[str, int]:
    """Load built-in task ``name`` into ``ws`` as ``who``; return example counts per split.

    Sizes: None = task default (60/40/100 for benchmarks, 50%/20%/30% for demo), an int =
    that many, 0 or "all" = the whole pool, a float in (0, 1) = that fraction of the pool.
    ``options`` are task options (contract-nli: ``context_tokens``). The task's description is
    its own, so its preamble is written by ``pld:template``; ``who`` (None: nobody named) loaded
    it, so cannot approve that preamble, and is the one a reload that changes the task is
    recorded under and checked against its approver list.
    """
    if name == "custom":
        raise BadInput("custom needs a file: python -m pld load custom --file PATH")
    task = get_task(name, **(options or {}))
    roots = as_roots(data_dir)
    examples = task.load_splits(roots, n_train=n_train, n_val=n_val, n_test=n_test, seed=seed)
    st = task.status(roots)
    params = {"seed": seed, "sizes": {"train": n_train, "val": n_val, "test": n_test},
              "complete": st.complete, "notes": st.notes,
              "pools": [{"splits": p.splits, "files": p.files, "size": p.size} for p in st.pools],
              "shape": task.shape, **task.params()}
    source = "; ".join(st.files)
    return _save(ws, task, examples, description=task.task_description, source=source,
                 params=params, author=None if who is None else Authorship(TEMPLATE, who))


def load_custom(
    ws: Workspace, path: str | Path, *, name: str | None = None, text_column: str = "text",
    label_column: str = "label", id_column: str | None = None, description: str | None = None,
    n_train: Size = None, n_val: Size = None, n_test: Size = None, seed: int = 0,
    shape: str = "single", who: Identity | None = None,
) -> dict[str, int]:
    """Validate a user's CSV/JSONL file and load it as task ``name`` (default: the file stem).

    Nothing is written unless the whole file is valid. Sizes as in :func:`load_task`; the
    defaults are 50% / 20% / 30% of the rows, capped at 60 / 40 / 100. ``shape`` says how
    each text is built (:data:`~pld.tasks.base.SHAPES`); it picks the form of the teacher's
    rules. ``description`` is the first thing teacher and student read: without one they only
    learn the file name and the labels. ``who`` supplied the file and its description: the
    task's preamble is their draft, which someone else approves; None (nobody named) leaves a
    preamble nobody may approve until a named person saves it.
    """
    if name is not None and name in BUILTIN_TASKS:
        raise BadInput(f"--name {name!r} is a built-in task; choose another name")
    if shape not in SHAPES:
        raise BadInput(f"--shape {shape!r}: use one of {', '.join(SHAPES)}")
    task = CustomTask(path, name=name, text_column=text_column, label_column=label_column,
                      id_column=id_column, description=description)
    if task.name in BUILTIN_TASKS:
        raise BadInput(f"task name {task.name!r} (from the file name) is a built-in task; "
                       "pass --name")
    examples = task.load_splits(n_train=n_train, n_val=n_val, n_test=n_test, seed=seed)
    params = {"seed": seed, "sizes": {"train": n_train, "val": n_val, "test": n_test},
              "shape": shape, **task.params()}
    return _save(ws, task, examples, description=task.task_description,
                 source=str(Path(path).resolve()), params=params,
                 author=Authorship(who or UNNAMED_UPLOAD))
