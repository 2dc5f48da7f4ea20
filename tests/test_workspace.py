"""The workspace file: creation, WAL, migration of older files, refusal of foreign files."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
import sqlite_utils

from pld.workspace import (
    MIGRATIONS,
    SCHEMA_VERSION,
    WorkspaceError,
    default_path,
    open_workspace,
    where_equal,
)

DESIGN_TABLES = {
    "tasks", "examples", "runs", "micro_instructions", "embeddings", "clusterings", "clusters",
    "cluster_members", "heuristics", "reviews", "prompts", "predictions", "proposals",
    "llm_calls", "evaluations", "approvers", "texts", "schema_version",
}


def test_new_workspace_has_every_table_and_wal(ws_path: Path) -> None:
    ws = open_workspace(ws_path)
    assert set(ws.db.table_names()) >= DESIGN_TABLES
    assert ws.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert ws.query("SELECT max(version) AS v FROM schema_version")[0]["v"] == SCHEMA_VERSION
    ws.close()


def test_reopen_keeps_data(ws_path: Path) -> None:
    with open_workspace(ws_path) as ws, ws.write() as db:
        db["approvers"].insert({"task": "demo", "name": "ana", "added_at": "t"})
    with open_workspace(ws_path) as ws:
        assert ws.query("SELECT name FROM approvers") == [{"name": "ana"}]


def test_older_file_is_upgraded(ws_path: Path) -> None:
    """A version-1 file (no evaluations/approvers tables) gains them and keeps its rows."""
    from pld import workspace

    conn = sqlite3.connect(ws_path)
    conn.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at TEXT)")
    conn.execute("INSERT INTO schema_version VALUES (1, 'then')")
    conn.commit()
    conn.close()
    # Build the v1 tables with the real v1 migration so the file is a genuine older workspace.
    import sqlite_utils

    db = sqlite_utils.Database(ws_path)
    workspace._v1(db)
    db["tasks"].insert({"name": "old", "kind": "custom", "labels": "[]"})
    db.close()

    ws = open_workspace(ws_path)
    assert "evaluations" in ws.db.table_names()
    versions = ws.query("SELECT version FROM schema_version ORDER BY version")
    assert [r["version"] for r in versions] == list(range(1, SCHEMA_VERSION + 1))
    assert ws.query("SELECT name FROM tasks") == [{"name": "old"}]
    ws.close()


def _older_file(path: Path, version: int) -> sqlite_utils.Database:
    """A genuine version-``version`` workspace at ``path``, built with the real migrations
    (close the returned handle before opening the file)."""
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at TEXT)")
    conn.executemany("INSERT INTO schema_version VALUES (?, 'then')",
                     [(v,) for v in range(1, version + 1)])
    conn.commit()
    conn.close()
    db = sqlite_utils.Database(path)
    for migrate in MIGRATIONS[:version]:
        migrate(db)
    return db


def test_version_7_file_gains_the_drafts_table(ws_path: Path) -> None:
    """A version-7 file (before drafts) gains the private drafts table and keeps its rows;
    a draft is then kept once per person, item and field."""
    db = _older_file(ws_path, 7)
    db["tasks"].insert({"name": "old", "kind": "custom", "labels": "[]"})
    db.close()

    with open_workspace(ws_path) as ws:
        assert "drafts" in ws.db.table_names()
        assert ws.query("SELECT max(version) AS v FROM schema_version")[0]["v"] \
            == SCHEMA_VERSION
        assert ws.query("SELECT name FROM tasks") == [{"name": "old"}]
        row = {"who": "bob", "identity_kind": "self-declared", "entity": "heuristic",
               "entity_id": 1, "field": "text", "text": "t", "base_version": 1,
               "updated_at": "now"}
        with ws.write() as db2:
            db2["drafts"].insert(row)
        with pytest.raises(sqlite3.IntegrityError), ws.write() as db2:
            db2["drafts"].insert(row)


def test_non_sqlite_file_refused_untouched(tmp_path: Path) -> None:
    p = tmp_path / "notes.db"
    p.write_bytes(b"hello, this is not a database\n" * 10)
    before = p.read_bytes()
    with pytest.raises(WorkspaceError, match="not an SQLite file"):
        open_workspace(p)
    assert p.read_bytes() == before
    assert not (tmp_path / "notes.db-wal").exists()


def test_foreign_sqlite_file_refused_untouched(tmp_path: Path) -> None:
    p = tmp_path / "other.db"
    conn = sqlite3.connect(p)
    conn.execute("CREATE TABLE songs (title TEXT)")
    conn.commit()
    conn.close()
    before = p.read_bytes()
    with pytest.raises(WorkspaceError, match="left untouched"):
        open_workspace(p)
    assert p.read_bytes() == before


def test_newer_schema_refused_untouched(ws_path: Path) -> None:
    open_workspace(ws_path).close()
    conn = sqlite3.connect(ws_path)
    conn.execute("INSERT INTO schema_version VALUES (?, 'future')", [SCHEMA_VERSION + 1])
    conn.commit()
    conn.close()
    before = ws_path.read_bytes()
    with pytest.raises(WorkspaceError, match="newer"):
        open_workspace(ws_path)
    assert ws_path.read_bytes() == before


def test_write_block_is_atomic_across_sqlite_utils_calls(ws_path: Path) -> None:
    """sqlite-utils commits in its own ``with conn``; our nested blocks must still roll back."""
    ws = open_workspace(ws_path)
    with pytest.raises(RuntimeError), ws.write() as db:
        db["approvers"].insert({"task": "t", "name": "a", "added_at": "x"})
        db["approvers"].insert_all([{"task": "t", "name": "b", "added_at": "x"}])
        raise RuntimeError("boom")
    assert ws.query("SELECT * FROM approvers") == []
    ws.close()


def test_default_path_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PLD_WORKSPACE", str(tmp_path / "w.db"))
    assert default_path() == tmp_path / "w.db"
    monkeypatch.delenv("PLD_WORKSPACE")
    assert default_path() == Path("data") / "workspace.db"


def test_upgrade_chains_the_existing_trail(ws_path: Path) -> None:
    """A version-5 file's reviews get hashes once, in id order, and the chain then holds."""
    from pld import trail

    db = _older_file(ws_path, 5)
    for i in range(3):
        db["reviews"].insert({"created_at": f"t{i}", "who": "ana", "identity_kind": "auto",
                              "entity": "heuristic", "entity_id": 1, "action": "edit",
                              "before": None, "after": "{}", "comment": None})
    db.close()

    with open_workspace(ws_path) as ws:
        rows = ws.query("SELECT * FROM reviews ORDER BY id")
        assert [r["prev_hash"] for r in rows] == [trail.GENESIS, rows[0]["row_hash"],
                                                 rows[1]["row_hash"]]
        assert trail.check_chain(ws) is None
        with ws.write() as db2:
            link = trail.append(db2, who="bo", identity_kind="auto", entity="x", entity_id=None,
                                action="y", before=None, after=None, comment=None)
        assert link.id == 4 and trail.check_chain(ws) is None


def test_where_equal_filters_only_by_what_is_given() -> None:
    assert where_equal({"a": None, "b": None}) == ("", [])
    assert where_equal({"a": 1, "b": None, "c": 0}, ["d IS NULL"]) == (
        " WHERE a = ? AND c = ? AND d IS NULL", [1, 0])


def test_a_version_8_file_keeps_four_eyes_with_its_authorship(ws_path: Path) -> None:
    """A version-8 file kept only the last writer (``updated_by``; for a job's draft, the person
    who started it): the upgrade reads who wrote each text from the trail, and every person
    four-eyes excluded before is excluded still."""
    from pld import review, trail
    from pld.authorship import Authorship
    from pld.identity import OIDC, Identity
    from pld.signoff import FourEyes, Unidentified

    db = _older_file(ws_path, 8)
    db["tasks"].insert({"name": "old", "kind": "custom", "labels": "[]", "description": "d"})
    db["runs"].insert({"id": 3, "task": "old", "kind": "consolidate", "started_by": "ana",
                       "started_by_kind": OIDC})
    rows = [  # as v8 wrote them: a job's draft, a person's edit, a reloaded file's preamble
        ("heuristics", {"id": 1, "run_id": 3, "created_by": "teacher:local/default",
                        "updated_by": "ana"}, "teacher:local/default", "auto"),
        ("heuristics", {"id": 2, "run_id": None, "created_by": "teacher:local/default",
                        "updated_by": "bob"}, "bob", "self-declared"),
        ("preambles", {"id": 1, "created_by": "pld:template", "updated_by": "pld:upload"},
         "pld:upload", "auto"),
    ]
    for table, cols, who, kind in rows:
        row = {"task": "old", "text": f"{table} {cols['id']}", "status": "draft", "version": 1,
               **cols}
        if table == "heuristics":
            row["source_rule_ids"] = "[]"
        db[table].insert(row)
        trail.append(db, who=who, identity_kind=kind, entity=table[:-1],
                     entity_id=cols["id"], action="create", before=None,
                     after=json.dumps(row), comment=None)
    db.close()

    with open_workspace(ws_path) as ws:
        assert "updated_by" not in ws.db["heuristics"].columns_dict
        h1, h2 = (review.get_heuristic(ws, i) for i in (1, 2))
        assert Authorship.from_row(h1).sentence() \
            == "written by teacher local/default in a job started by ana"
        assert Authorship.from_row(h1).started_by == Identity("ana", OIDC)
        assert Authorship.from_row(h2).sentence() == "written by bob"
        for hid, author in ((1, "ana"), (2, "bob")):
            with pytest.raises(FourEyes):
                review.approve(ws, hid, Identity(author), base_version=1)
            assert review.approve(ws, hid, Identity("carol"), base_version=1)["status"] \
                == "approved"
        with pytest.raises(Unidentified):
            review.approve(ws, 1, Identity("carol"), base_version=1, entity="preamble")


def test_version_9_file_gains_rule_evidence(ws_path: Path) -> None:
    """A version-9 file (before rule evidence) keeps its rules; they gain the examples they
    came from and their similarity to the task, and the rule_evidence table appears."""
    db = _older_file(ws_path, 9)
    db["micro_instructions"].insert({"task": "old", "example_id": None, "rule": "r",
                                     "status": "ok", "flags": "[]"})
    db.close()

    with open_workspace(ws_path) as ws:
        assert ws.query("SELECT max(version) AS v FROM schema_version")[0]["v"] == 10
        [row] = ws.query("SELECT * FROM micro_instructions")
        assert row["rule"] == "r" and row["source_examples"] is None
        assert row["task_similarity"] is None and row["similar_to"] is None
        assert "rule_evidence" in ws.db.table_names()
        assert ws.db["rule_evidence"].pks == ["rule_id", "student"]
