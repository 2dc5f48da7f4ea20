"""Stage 4, review: the heuristic lifecycle (edit, approve, reject, create, merge, split), its
audit trail and optimistic concurrency. Who may sign off is tested in tests/test_signoff.py."""

from __future__ import annotations

import itertools
import threading
from pathlib import Path
from typing import Any

import pytest

from pld import review, trail
from pld.errors import BadInput
from pld.identity import AUTO, OIDC, Identity
from pld.review_rows import StaleEdit
from pld.tasks.store import save_task
from pld.workspace import Workspace, dumps, now, open_workspace
from tests.conftest import approve_seen

TASK = "claims"
RUN = 7


@pytest.fixture
def task(ws: Workspace) -> str:
    save_task(ws, name=TASK, kind="custom", labels=["true", "false"], description="",
              source="test", params={}, examples=[])
    return TASK


def add_rules(ws: Workspace, specs: list[tuple[str, str]]) -> list[int]:
    """One example and one micro-instruction per (rule text, gold label); returns rule ids."""
    ids = []
    with ws.write() as db:
        for text, label in specs:
            n = db.execute("SELECT count(*) FROM examples").fetchone()[0]
            ex = db["examples"].insert({"task": TASK, "split": "train", "ext_id": f"e{n}",
                                        "text": f"example {n}", "label": label,
                                        "meta": "{}", "created_at": now()}).last_pk
            ids.append(int(db["micro_instructions"].insert({
                "task": TASK, "example_id": ex, "teacher": "t", "rule": text, "label": label,
                "status": "ok", "created_at": now(),
            }).last_pk))
    return ids


def teacher_draft(ws: Workspace, text: str, rule_ids: list[int] | None = None,
                  run_id: int = RUN) -> int:
    """A heuristic as consolidate leaves it: a teacher's draft no person has touched."""
    with ws.write() as db:
        return int(db["heuristics"].insert({
            "task": TASK, "text": text, "status": "draft", "version": 1,
            "source_rule_ids": dumps(rule_ids or []), "origin": "consolidate",
            "created_by": "teacher:openai/x", "created_at": now(), "updated_at": now(),
            "run_id": run_id,
        }).last_pk)


def row(ws: Workspace, hid: int) -> dict[str, Any]:
    return ws.query("SELECT * FROM heuristics WHERE id = ?", [hid])[0]


def test_edit_bumps_version_and_audits(ws: Workspace, task: str) -> None:
    hid = teacher_draft(ws, "old text")
    after = review.edit(ws, hid, "new text", Identity("alice"), base_version=1, comment="clearer")

    assert (after["version"], after["text"], after["written_by"]) == (2, "new text", "alice")
    (audit,) = review.history(ws, hid)
    assert (audit["who"], audit["action"], audit["identity_kind"], audit["comment"]) \
        == ("alice", "edit", "self-declared", "clearer")
    assert (audit["before"]["text"], audit["before"]["version"]) == ("old text", 1)
    assert (audit["after"]["text"], audit["after"]["version"]) == ("new text", 2)


def test_stale_edit_is_refused_and_shows_their_change(ws: Workspace, task: str) -> None:
    hid = teacher_draft(ws, "old text")
    review.edit(ws, hid, "alice's text", Identity("alice"), base_version=1)

    with pytest.raises(StaleEdit) as err:
        review.edit(ws, hid, "bob's text", Identity("bob"), base_version=1)

    assert err.value.theirs is not None
    assert (err.value.theirs["who"], err.value.theirs["after"]["text"]) == ("alice", "alice's text")
    assert (err.value.current["version"], err.value.current["text"]) == (2, "alice's text")
    message = str(err.value)
    assert "alice" in message and err.value.theirs["created_at"] in message
    assert "\n" not in message
    assert row(ws, hid)["text"] == "alice's text"
    assert [h["who"] for h in review.history(ws, hid)] == ["alice"]


def test_edit_after_approval_resets_to_draft(ws: Workspace, task: str) -> None:
    hid = teacher_draft(ws, "old text")
    approved = approve_seen(ws, hid, Identity("alice"))
    assert [h["id"] for h in review.approved_heuristics(ws, TASK)] == [hid]

    edited = review.edit(ws, hid, "new text", Identity("bob"), base_version=approved["version"])

    assert (edited["status"], edited["approved_by"], edited["approved_at"]) \
        == ("draft", None, None)
    assert review.approved_heuristics(ws, TASK) == []


def test_approve_and_reject_refuse_stale_base_version(ws: Workspace, task: str) -> None:
    hid = teacher_draft(ws, "old text")
    review.edit(ws, hid, "new text", Identity("bob"), base_version=1)

    with pytest.raises(StaleEdit, match="bob"):
        review.approve(ws, hid, Identity("alice"), base_version=1)
    with pytest.raises(StaleEdit):
        review.reject(ws, hid, Identity("alice"), base_version=1)
    rejected = review.reject(ws, hid, Identity("alice"), base_version=2, comment="too vague")
    assert rejected["status"] == "rejected"
    # An edit prepared before the rejection cannot silently revive it.
    with pytest.raises(StaleEdit, match="reject"):
        review.edit(ws, hid, "newer text", Identity("bob"), base_version=2)
    revived = review.edit(ws, hid, "newer text", Identity("bob"), base_version=3)
    assert revived["status"] == "draft"


def test_auto_approve_all(ws: Workspace, task: str) -> None:
    untouched = teacher_draft(ws, "teacher text")
    by_bob = teacher_draft(ws, "teacher text 2")
    review.edit(ws, by_bob, "bob's text", Identity("bob"), base_version=1)
    by_bench = teacher_draft(ws, "teacher text 3")
    review.edit(ws, by_bench, "bench's text", Identity("bench"), base_version=1)
    rejected = teacher_draft(ws, "bad")
    review.reject(ws, rejected, Identity("bob"))
    other_run = teacher_draft(ws, "from an earlier run", run_id=RUN + 1)
    by_hand = review.create_heuristic(ws, TASK, "carol's rule", Identity("carol"))
    skipped: list[str] = []

    n = review.auto_approve_all(ws, TASK, Identity("bench", AUTO), run_ids=[RUN],
                                on_skip=skipped.append)

    # Only the drafts of the given run: a person's own draft, or another run's, waits.
    assert row(ws, other_run)["status"] == row(ws, by_hand)["status"] == "draft"
    assert n == 2
    assert [h["id"] for h in review.approved_heuristics(ws, TASK)] == [untouched, by_bob]
    assert len(skipped) == 1 and f"heuristic {by_bench}" in skipped[0]
    assert row(ws, by_bench)["status"] == "draft"
    audit = review.history(ws, untouched)[-1]
    assert (audit["who"], audit["identity_kind"], audit["action"], audit["comment"]) \
        == ("bench", "auto", "approve", "auto-approved (benchmark)")
    assert row(ws, untouched)["identity_kind"] == "auto"


def test_merge_unions_sources(ws: Workspace, task: str) -> None:
    r1, r2, r3 = add_rules(ws, [("a", "true"), ("b", "false"), ("c", "true")])
    h1 = teacher_draft(ws, "one", [r1, r2])
    h2 = teacher_draft(ws, "two", [r2, r3])

    new = review.merge_heuristics(ws, [h1, h2], "one and two", Identity("alice"))

    merged = review.get_heuristic(ws, new)
    assert (merged["text"], merged["origin"], merged["status"]) == ("one and two", "merge", "draft")
    assert merged["source_rule_ids"] == [r1, r2, r3]
    assert {row(ws, h)["status"] for h in (h1, h2)} == {"merged"}
    assert review.history(ws, h1)[-1]["after"]["merged_into"] == new
    with pytest.raises(BadInput, match="merged"):
        review.merge_heuristics(ws, [h1, new], "again", Identity("alice"))
    with pytest.raises(BadInput, match="merged"):
        review.edit(ws, h1, "late edit", Identity("bob"), base_version=row(ws, h1)["version"])


def test_split_replaces_one_by_several(ws: Workspace, task: str) -> None:
    (r1,) = add_rules(ws, [("a", "true")])
    hid = teacher_draft(ws, "a and b", [r1])

    parts = review.split_heuristic(ws, hid, ["a", "b"], Identity("alice"), base_version=1)

    assert [row(ws, p)["text"] for p in parts] == ["a", "b"]
    assert all(review.get_heuristic(ws, p)["source_rule_ids"] == [r1] for p in parts)
    assert row(ws, hid)["status"] == "split"
    assert review.history(ws, hid)[-1]["after"]["split_into"] == parts
    with pytest.raises(BadInput, match="two texts"):
        review.split_heuristic(ws, parts[0], ["only one"], Identity("alice"))


def test_history_is_oldest_first(ws: Workspace, task: str) -> None:
    hid = review.create_heuristic(ws, TASK, "first", Identity("carol"))
    review.edit(ws, hid, "second", Identity("carol"), base_version=1)
    approve_seen(ws, hid, Identity("alice"))
    review.reject(ws, hid, Identity("bob"))

    trail = review.history(ws, hid)

    assert [(h["action"], h["who"]) for h in trail] == [
        ("create", "carol"), ("edit", "carol"), ("approve", "alice"), ("reject", "bob")]
    assert [h["after"]["version"] for h in trail] == [1, 2, 3, 4]


def test_get_heuristic_shows_sources_with_examples(ws: Workspace, task: str) -> None:
    r1, r2 = add_rules(ws, [("rule a", "true"), ("rule b", "false")])
    hid = teacher_draft(ws, "h", [r2, r1])
    empty = teacher_draft(ws, "no sources")

    shown = review.get_heuristic(ws, hid)

    assert [s["rule_id"] for s in shown["sources"]] == [r1, r2]
    assert [(s["rule"], s["gold_label"]) for s in shown["sources"]] \
        == [("rule a", "true"), ("rule b", "false")]
    assert all(s["example_text"].startswith("example ") for s in shown["sources"])
    assert (shown["id"], shown["text"], shown["version"]) == (hid, "h", 1)
    assert review.get_heuristic(ws, empty)["sources"] == []
    with pytest.raises(BadInput, match="heuristic 999 not found"):
        review.get_heuristic(ws, 999)


def test_list_heuristics_and_input_checks(ws: Workspace, task: str) -> None:
    h1 = teacher_draft(ws, "one")
    h2 = teacher_draft(ws, "two")
    approve_seen(ws, h2, Identity("alice"))

    assert [h["id"] for h in review.list_heuristics(ws, TASK)] == [h1, h2]
    assert [h["id"] for h in review.list_heuristics(ws, TASK, "draft")] == [h1]
    with pytest.raises(BadInput, match="status"):
        review.list_heuristics(ws, TASK, "pending")
    with pytest.raises(BadInput, match="reviewer name"):
        review.edit(ws, h1, "x", Identity(" "), base_version=1)
    with pytest.raises(BadInput, match="reserved"):
        approve_seen(ws, h1, Identity("teacher:me"))
    with pytest.raises(BadInput, match="identity kind"):
        approve_seen(ws, h1, Identity("alice", "trust-me"))
    with pytest.raises(BadInput, match="same"):
        review.edit(ws, h1, "one", Identity("alice"), base_version=1)
    with pytest.raises(BadInput, match="is approved"):
        approve_seen(ws, h2, Identity("bob"))
    with pytest.raises(BadInput, match="not found"):
        review.create_heuristic(ws, TASK, "x", Identity("alice"), source_rule_ids=[12345])
    assert approve_seen(ws, h1, Identity("alice", OIDC))["identity_kind"] == "oidc"


def test_concurrent_edits_exactly_one_wins(ws: Workspace, ws_path: Path, task: str) -> None:
    hid = teacher_draft(ws, "old text")
    # Two connections to the same file behave like two processes: only SQLite serialises them.
    handles = [open_workspace(ws_path) for _ in range(2)]
    barrier = threading.Barrier(2)
    outcomes: dict[str, str] = {}

    def editor(name: str, handle: Workspace) -> None:
        barrier.wait()
        try:
            review.edit(handle, hid, f"{name}'s text", Identity(name), base_version=1)
            outcomes[name] = "won"
        except StaleEdit:
            outcomes[name] = "stale"

    threads = [threading.Thread(target=editor, args=(n, h))
               for n, h in zip(["alice", "bob"], handles, strict=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for h in handles:
        h.close()

    assert sorted(outcomes.values()) == ["stale", "won"]
    winner = next(n for n, o in outcomes.items() if o == "won")
    assert (row(ws, hid)["text"], row(ws, hid)["version"]) == (f"{winner}'s text", 2)
    assert [h["who"] for h in review.history(ws, hid)] == [winner]


def test_approving_needs_the_version_the_reviewer_read(ws: Workspace, task: str) -> None:
    # Before: approve without a base version approved whatever text was current.
    hid = teacher_draft(ws, "text")
    with pytest.raises(BadInput, match="version you reviewed"):
        review.approve(ws, hid, Identity("alice"), base_version=None)  # type: ignore[arg-type]


def test_the_trail_is_a_hash_chain(ws: Workspace, task: str) -> None:
    hid = teacher_draft(ws, "text")
    review.edit(ws, hid, "new text", Identity("bob"), base_version=1)
    approve_seen(ws, hid, Identity("alice"))
    assert trail.check_chain(ws) is None
    rows = ws.query("SELECT * FROM reviews ORDER BY id")
    assert rows[0]["prev_hash"] == trail.GENESIS
    assert all(b["prev_hash"] == a["row_hash"] for a, b in itertools.pairwise(rows))
    assert trail.head(ws) == trail.Link(rows[-1]["id"], rows[-1]["row_hash"])
    with ws.write() as db:
        db.execute("UPDATE reviews SET comment = 'fine' WHERE id = ?", [rows[0]["id"]])
    broken = trail.check_chain(ws)
    assert broken is not None and broken.row_id == rows[0]["id"]
