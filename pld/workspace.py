"""Open, create and migrate the one SQLite workspace that holds everything.

A workspace is a single SQLite file (WAL mode) managed through sqlite-utils. Every table of the
method lives here: examples, rules, embeddings, clusterings, heuristics, reviews, prompts, runs,
predictions, evaluations, proposals, the LLM call log and reviewers' private drafts. The schema
carries a version number in ``schema_version``; opening an older file upgrades it in place,
opening a newer file or a file that is not SQLite fails with :class:`WorkspaceError` and leaves
the file untouched.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlite_utils

from pld import trail
from pld.errors import BadInput

SCHEMA_VERSION = 10


class WorkspaceError(Exception):
    """The workspace file cannot be opened or used (wrong format, newer schema, ...)."""


def now() -> str:
    """UTC timestamp in ISO-8601, the format every ``*_at`` column uses."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def default_path() -> Path:
    """``$PLD_WORKSPACE`` when set, else ``data/workspace.db`` under the current directory."""
    env = os.environ.get("PLD_WORKSPACE")
    return Path(env) if env else Path("data") / "workspace.db"


class _Connection(sqlite3.Connection):
    """A connection whose ``with`` blocks nest.

    sqlite-utils wraps each write in ``with conn:``; with the stock connection the innermost block
    commits, so a multi-step write (an import, a review action) could be left half done. Here
    only the outermost block commits (or rolls back on error), which makes :meth:`Workspace.write`
    atomic however many sqlite-utils calls it contains.
    """

    _depth = 0

    def __enter__(self) -> _Connection:
        if self._depth == 0 and not self.in_transaction:
            self.execute("BEGIN IMMEDIATE")
        self._depth += 1
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> bool:
        self._depth -= 1
        if self._depth == 0:
            if exc_type is None:
                self.commit()
            else:
                self.rollback()
        return False


class Workspace:
    """A handle on one workspace file.

    ``db`` is a :class:`sqlite_utils.Database`. The connection may be used from several threads
    (teacher calls run concurrently), so every write should go through :meth:`write`, which
    serialises writers inside this process; SQLite's own locking plus WAL handles other processes.
    """

    def __init__(self, path: Path, conn: sqlite3.Connection) -> None:
        self.path = path
        self.conn = conn
        self.db = sqlite_utils.Database(conn)
        self.lock = threading.RLock()

    @contextmanager
    def write(self) -> Iterator[sqlite_utils.Database]:
        """Hold the process-wide write lock and run the block in one transaction."""
        with self.lock, self.conn:
            yield self.db

    def query(self, sql: str, params: Any = ()) -> list[dict[str, Any]]:
        """Run a read query and return the rows as dicts."""
        with self.lock:
            return list(self.db.query(sql, params))

    def close(self) -> None:
        """Close the underlying connection."""
        self.conn.close()

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_workspace(path: str | Path | None = None) -> Workspace:
    """Open (creating if needed) the workspace at ``path`` and bring its schema up to date."""
    path = Path(path) if path is not None else default_path()
    # The file is never opened with plain open(): closing any other descriptor of a database
    # drops SQLite's POSIX locks held by this process, and another process may then delete the
    # WAL under a live connection. SQLite itself tells a foreign file apart, without writing.
    if path.parent and not path.parent.exists():
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise WorkspaceError(
                f"{path}: cannot create its folder {path.parent} ({e.strerror or e})"
            ) from e
    conn: sqlite3.Connection | None = None
    try:
        conn = sqlite3.connect(
            str(path), check_same_thread=False, timeout=30, isolation_level=None,
            factory=_Connection,
        )
        version = _read_version(conn)
    except sqlite3.DatabaseError as e:
        if conn is not None:
            conn.close()
        if "not a database" in str(e):
            raise WorkspaceError(
                f"{path}: not a PLD Studio workspace (not an SQLite file); left untouched"
            ) from e
        raise WorkspaceError(f"{path}: cannot be read as a workspace ({e}); left untouched") from e
    if version > SCHEMA_VERSION:
        conn.close()
        raise WorkspaceError(
            f"{path}: workspace schema version {version} is newer than this PLD Studio "
            f"(supports up to {SCHEMA_VERSION}); upgrade PLD Studio. The file was left untouched."
        )
    # Autocommit mode (isolation_level=None): transactions are opened explicitly by
    # _Connection.__enter__, never implicitly by the sqlite3 module.
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA foreign_keys = ON")
    ws = Workspace(path, conn)
    if version < SCHEMA_VERSION:
        _migrate(ws, version)
    return ws


def _read_version(conn: sqlite3.Connection) -> int:
    row = conn.execute(
        "SELECT name FROM sqlite_master WHERE type='table' AND name='schema_version'"
    ).fetchone()
    if row is None:
        # A file with tables but no version table is not ours.
        other = conn.execute("SELECT count(*) FROM sqlite_master WHERE type='table'").fetchone()[0]
        if other:
            raise sqlite3.DatabaseError("SQLite file without a PLD schema_version table")
        return 0
    got = conn.execute("SELECT max(version) FROM schema_version").fetchone()[0]
    return int(got or 0)


def _v1(db: sqlite_utils.Database) -> None:
    """The initial schema: the tables of DESIGN.md."""
    db["tasks"].create(
        {"name": str, "kind": str, "labels": str, "description": str, "source": str,
         "params": str, "created_at": str},
        pk="name",
    )
    db["examples"].create(
        {"id": int, "task": str, "split": str, "ext_id": str, "text": str, "label": str,
         "meta": str, "created_at": str},
        pk="id", foreign_keys=[("task", "tasks", "name")],
    )
    db["examples"].create_index(["task", "ext_id"], unique=True)
    db["examples"].create_index(["task", "split"])
    db["runs"].create(
        {"id": int, "task": str, "kind": str, "params": str, "status": str, "done": int,
         "total": int, "started_at": str, "updated_at": str, "finished_at": str,
         "error": str, "pid": int},
        pk="id",
    )
    db["runs"].create_index(["task", "kind"])
    db["llm_calls"].create(
        {"id": int, "created_at": str, "model": str, "stage": str, "run_id": int,
         "cache_key": str, "system_sha256": str, "messages": str, "params": str, "response": str,
         "input_tokens": int, "output_tokens": int, "cached_tokens": int, "latency_s": float,
         "cost_usd": float, "cache_hit": int, "attempt": int, "error": str},
        pk="id",
    )
    db["llm_calls"].create_index(["cache_key"])
    # System prompts repeat across thousands of student calls: store each text once.
    db["texts"].create({"sha256": str, "text": str}, pk="sha256")
    db["llm_calls"].create_index(["stage"])
    db["micro_instructions"].create(
        {"id": int, "task": str, "example_id": int, "run_id": int, "teacher": str,
         "reasoning": str, "rule": str, "label": str, "status": str, "flags": str, "raw": str,
         "error": str, "call_id": int, "created_at": str},
        pk="id", foreign_keys=[("example_id", "examples", "id")],
    )
    db["micro_instructions"].create_index(["task", "example_id", "teacher"], unique=True)
    db["micro_instructions"].create_index(["task", "status"])
    db["embeddings"].create(
        {"rule_id": int, "model": str, "dim": int, "vector": bytes, "created_at": str},
        pk=("rule_id", "model"),
    )
    db["clusterings"].create(
        {"id": int, "task": str, "method": str, "embed_model": str, "params": str,
         "metrics": str, "status": str, "created_at": str, "accepted_by": str,
         "accepted_at": str},
        pk="id",
    )
    db["clusters"].create(
        {"id": int, "clustering_id": int, "label": int, "name": str, "keywords": str,
         "size": int},
        pk="id", foreign_keys=[("clustering_id", "clusterings", "id")],
    )
    db["clusters"].create_index(["clustering_id", "label"], unique=True)
    db["cluster_members"].create(
        {"clustering_id": int, "rule_id": int, "cluster_id": int, "x": float, "y": float},
        pk=("clustering_id", "rule_id"),
    )
    db["heuristics"].create(
        {"id": int, "task": str, "cluster_id": int, "clustering_id": int, "text": str,
         "status": str, "version": int, "source_rule_ids": str, "origin": str,
         "created_by": str, "updated_by": str, "approved_by": str, "approved_at": str,
         "identity_kind": str, "created_at": str, "updated_at": str},
        pk="id",
    )
    db["heuristics"].create_index(["task", "status"])
    db["reviews"].create(
        {"id": int, "created_at": str, "who": str, "identity_kind": str, "entity": str,
         "entity_id": int, "action": str, "before": str, "after": str, "comment": str},
        pk="id",
    )
    db["reviews"].create_index(["entity", "entity_id"])
    db["prompts"].create(
        {"id": int, "task": str, "version": int, "text": str, "sha256": str,
         "heuristic_ids": str, "origin": str, "parent_version": int, "created_at": str},
        pk="id",
    )
    db["prompts"].create_index(["task", "version"], unique=True)
    db["predictions"].create(
        {"id": int, "run_id": int, "example_id": int, "raw": str, "label": str,
         "correct": int, "call_id": int, "created_at": str},
        pk="id",
    )
    db["predictions"].create_index(["run_id", "example_id"], unique=True)
    db["proposals"].create(
        {"id": int, "task": str, "run_id": int, "iteration": int, "heuristic_id": int,
         "kind": str, "text": str, "rationale": str, "evidence": str, "status": str,
         "decided_by": str, "decided_at": str, "created_at": str},
        pk="id",
    )
    db["proposals"].create_index(["task", "iteration"])


def _v2(db: sqlite_utils.Database) -> None:
    """Evaluations and the approver list."""
    db["evaluations"].create(
        {"id": int, "task": str, "run_id": int, "method": str, "prompt_version": int,
         "prompt_sha256": str, "student": str, "split": str, "n": int, "metrics": str,
         "created_at": str},
        pk="id",
    )
    db["evaluations"].create_index(["task", "prompt_sha256"])
    db["approvers"].create({"task": str, "name": str, "added_at": str}, pk=("task", "name"))


def _v3(db: sqlite_utils.Database) -> None:
    """Clusters whose consolidation failed, so that a rerun shows them failed instead of
    asking the teacher again (which only ``--retry-failed`` does)."""
    db["consolidate_failures"].create(
        {"clustering_id": int, "cluster_id": int, "teacher": str, "task": str, "run_id": int,
         "error": str, "created_at": str},
        pk=("clustering_id", "cluster_id", "teacher"),
    )


def _v4(db: sqlite_utils.Database) -> None:
    """Label scores and calibration: each label's log-probability on a student call and its
    prediction, and the per-label bias fitted on validation for a (prompt, student)."""
    db["llm_calls"].add_column("label_logprobs", str)
    db["predictions"].add_column("scores", str)
    db["calibrations"].create(
        {"id": int, "task": str, "student": str, "prompt_sha256": str, "method": str,
         "split": str, "val_limit": int, "run_id": int, "n": int, "bias": str,
         "status": str, "reason": str, "metrics": str, "created_at": str},
        pk="id",
    )
    db["calibrations"].create_index(
        ["task", "student", "prompt_sha256", "method", "val_limit"], unique=True)


def _v5(db: sqlite_utils.Database) -> None:
    """Impact reports: each approved heuristic's leave-one-out effect on validation."""
    db["impacts"].create(
        {"id": int, "task": str, "student": str, "prompt_sha256": str, "val_limit": int,
         "calibration": str, "report": str, "created_at": str},
        pk="id",
    )
    db["impacts"].create_index(
        ["task", "student", "prompt_sha256", "val_limit", "calibration"], unique=True)


def _v6(db: sqlite_utils.Database) -> None:
    """The sign-off trail: ``reviews`` becomes a hash chain (existing rows are hashed once, in
    id order), the student prompt's preamble becomes a reviewed item, heuristics remember the
    run that wrote them and runs who started them."""
    db["reviews"].add_column("prev_hash", str)
    db["reviews"].add_column("row_hash", str)
    trail.hash_existing(db)
    db["preambles"].create(
        {"id": int, "task": str, "text": str, "status": str, "version": int,
         "created_by": str, "updated_by": str, "approved_by": str, "approved_at": str,
         "identity_kind": str, "created_at": str, "updated_at": str},
        pk="id", foreign_keys=[("task", "tasks", "name")],
    )
    db["preambles"].create_index(["task"], unique=True)
    db["heuristics"].add_column("run_id", int)
    db["runs"].add_column("started_by", str)
    db["runs"].add_column("started_by_kind", str)
    db["runs"].add_column("pid_start", int)
    db["tasks"].add_column("require_oidc", int)
    db["prompts"].add_column("built_by", str)


def _v7(db: sqlite_utils.Database) -> None:
    """Batch mode: provider batches and their requests (written before the provider's create,
    so a killed process resumes by polling them), and the batch each answer came from."""
    db["batches"].create(
        {"id": int, "tag": str, "model": str, "provider": str, "provider_batch_id": str,
         "input_file_id": str, "run_id": int, "status": str, "provider_status": str,
         "n_requests": int, "bytes": int, "succeeded": int, "failed": int,
         "unreadable_lines": int, "pid": int, "pid_start": int, "note": str,
         "created_at": str, "submitted_at": str, "ended_at": str, "landed_at": str,
         "updated_at": str},
        pk="id",
    )
    db["batches"].create_index(["status"])
    db["batches"].create_index(["run_id"])
    db["batch_requests"].create(
        {"batch_id": int, "custom_id": str, "cache_key": str, "stage": str,
         "system_sha256": str, "messages": str, "params": str, "status": str},
        pk=("batch_id", "custom_id"), foreign_keys=[("batch_id", "batches", "id")],
    )
    db["batch_requests"].create_index(["cache_key", "status"])
    db["batch_requests"].create_index(["batch_id", "status"])
    db["llm_calls"].add_column("batch_id", int)


def _v8(db: sqlite_utils.Database) -> None:
    """Drafts: a reviewer's unsaved text (an edit, its comment), kept privately until it is
    saved or discarded, so a reload loses nothing typed. Not part of the audit trail."""
    db["drafts"].create(
        {"id": int, "who": str, "identity_kind": str, "entity": str, "entity_id": int,
         "field": str, "text": str, "base_version": int, "updated_at": str},
        pk="id",
    )
    db["drafts"].create_index(["who", "identity_kind", "entity", "entity_id", "field"],
                              unique=True)


def _v9_roles(db: sqlite_utils.Database, entity: str,
              row: dict[str, Any]) -> dict[str, str | None]:
    """A row's authorship from what v8 kept: ``updated_by`` (for a job's draft, the person who
    started it) and the trail's last write of its text (who wrote it, with what kind)."""
    last, last_by = None, row["updated_by"]
    for r in db.query("SELECT who, identity_kind, before, after FROM reviews WHERE entity = ? "
                      "AND entity_id = ? ORDER BY id DESC", [entity, row["id"]]):
        before, after = loads(r["before"], {}) or {}, loads(r["after"], {}) or {}
        if "text" in after and (not before or before.get("text") != after.get("text")):
            last = r
            break
    name = last_by or (last["who"] if last else None) or row["created_by"] or "pld:anonymous"
    kind = "auto" if name.startswith(("teacher:", "pld:")) else "self-declared"
    roles: dict[str, str | None] = {"written_by": name, "written_by_kind": kind,
                                    "started_by": None, "started_by_kind": None,
                                    "accepted_by": None, "accepted_by_kind": None}
    if last is not None and last["who"] == name:
        roles["written_by_kind"] = last["identity_kind"]
    elif last is not None and last["who"].startswith("teacher:") and kind != "auto":
        # A job's draft: the teacher wrote it, the person who started the job answers for it.
        run = list(db.query("SELECT started_by, started_by_kind FROM runs WHERE id = ?",
                            [row.get("run_id")]))
        roles.update(written_by=last["who"], written_by_kind="auto", started_by=name,
                     started_by_kind=run[0]["started_by_kind"]
                     if run and run[0]["started_by"] == name else kind)
    return roles


def _v9(db: sqlite_utils.Database) -> None:
    """Authorship (:mod:`pld.authorship`): each heuristic and preamble records who wrote its
    text, who started the job that wrote it and who accepted the proposal that wrote it, each
    with an identity kind; they replace ``updated_by``, the last writer."""
    for table, entity in (("heuristics", "heuristic"), ("preambles", "preamble")):
        for role in ("written_by", "started_by", "accepted_by"):
            db[table].add_column(role, str)
            db[table].add_column(f"{role}_kind", str)
        for row in list(db.query(f"SELECT * FROM {table}")):
            roles = _v9_roles(db, entity, row)
            db.execute(f"UPDATE {table} SET " + ", ".join(f"{c} = ?" for c in roles)
                       + " WHERE id = ?", [*roles.values(), row["id"]])
        db.execute(f"ALTER TABLE {table} DROP COLUMN updated_by")


def _v10(db: sqlite_utils.Database) -> None:
    """Rule evidence: the examples a rule came from (its source and contrast), its similarity
    to the task description (restatements), and what it did alone in a student's prompt."""
    db["micro_instructions"].add_column("source_examples", str)
    db["micro_instructions"].add_column("task_similarity", float)
    db["micro_instructions"].add_column("similar_to", str)
    db["rule_evidence"].create(
        {"rule_id": int, "student": str, "task": str, "status": str, "effect": float,
         "helped": int, "hurt": int, "n": int, "items": str, "prompt_sha256": str,
         "calibration_id": int, "run_id": int, "reason": str, "created_at": str},
        pk=("rule_id", "student"), foreign_keys=[("rule_id", "micro_instructions", "id")],
    )
    db["rule_evidence"].create_index(["task", "student"])


MIGRATIONS: list[Callable[[sqlite_utils.Database], None]] = [
    _v1, _v2, _v3, _v4, _v5, _v6, _v7, _v8, _v9, _v10]


def _migrate(ws: Workspace, current: int) -> None:
    with ws.write() as db:
        if current == 0:
            db["schema_version"].create({"version": int, "applied_at": str}, pk="version")
        for version in range(current + 1, SCHEMA_VERSION + 1):
            MIGRATIONS[version - 1](db)
            db["schema_version"].insert({"version": version, "applied_at": now()})


def dumps(value: Any) -> str:
    """JSON-encode a value for a TEXT column (stable key order, unicode kept readable)."""
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def row_by_id(ws: Workspace, table: str, row_id: int, what: str,
              decode: dict[str, Any] | None = None) -> dict[str, Any]:
    """Row ``row_id`` of ``table`` with the JSON columns named in ``decode`` decoded (each to
    its default when NULL); :class:`~pld.errors.BadInput` "WHAT ROW_ID not found" otherwise."""
    rows = ws.query(f"SELECT * FROM {table} WHERE id = ?", [row_id])
    if not rows:
        raise BadInput(f"{what} {row_id} not found")
    row = rows[0]
    for column, default in (decode or {}).items():
        row[column] = loads(row[column], default)
    return row


def where_equal(equal: dict[str, Any], extra: Sequence[str] = ()) -> tuple[str, list[Any]]:
    """`` WHERE col = ? AND ...`` for the columns of ``equal`` whose value is not None, plus
    the ``extra`` conditions, and its arguments; ``("", [])`` when nothing filters."""
    conditions = [f"{col} = ?" for col, v in equal.items() if v is not None] + list(extra)
    args = [v for v in equal.values() if v is not None]
    return (" WHERE " + " AND ".join(conditions) if conditions else ""), args


def loads(value: str | None, default: Any = None) -> Any:
    """Decode a JSON TEXT column, returning ``default`` for NULL."""
    return default if value is None else json.loads(value)
