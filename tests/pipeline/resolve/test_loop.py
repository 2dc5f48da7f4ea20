"""Stage 6, resolve conflicts: real workspaces; one fake OpenAI-compatible server plays both the
student (it labels by the keywords the numbered rules in its system prompt list) and the teacher
(it proposes rule edits from the errors it is shown), so an accepted edit really fixes errors."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import pytest

from pld import review, signoff
from pld.errors import BadInput, NotReady
from pld.identity import AUTO, Identity
from pld.pipeline.resolve import decisions, impact, proposals, state, view
from pld.pipeline.resolve import loop as rs
from pld.pipeline.student import get_prompt
from pld.review_rows import StaleEdit
from pld.signoff import FourEyes
from pld.tasks.store import Example, save_task
from pld.workspace import Workspace, dumps, loads, now
from tests.conftest import approve_seen
from tests.fakes.openai_server import FakeOpenAI

TASK = "news"
LABELS = ["sports", "finance", "other"]
SPORTS = "Texts mentioning goal or match are sports."
FINANCE = "Texts mentioning stock or bank are finance."
VAL = [
    ("A sports story: the striker scored a goal.", "sports"),
    ("A sports story: the team lifted the cup.", "sports"),
    ("A sports story: fans cheered the team loudly.", "sports"),
    ("A finance story: the bank raised its rates.", "finance"),
    ("A finance story: the stock fell sharply.", "finance"),
    ("A finance story: bond yields climbed again.", "finance"),
    ("A weather story: rain is expected tomorrow.", "other"),
    ("A cooking story: bake the bread slowly.", "other"),
]
# Each item said twice: on the 8 items of VAL two fixed answers are within noise (the paired CI
# of the change includes zero), on these 16 four are not, so an automatic change is decided.
VAL_TWICE = VAL + [(f"{text} Reported again.", label) for text, label in VAL]
# Test items carry a marker so that any leak into the loop is visible in the fake's requests.
TEST = [("TESTONLY sports: the team won the match.", "sports"),
        ("TESTONLY finance: the bond market rallied.", "finance")]
TRAIN = [("A sports story: a late goal decided it.", "sports"),
         ("A finance story: the bank cut fees.", "finance"),
         ("A garden story: plant tulips in autumn.", "other")]
RULE = re.compile(r"^(\d+)\. Texts mentioning (.+?) are (\w+)\.$", re.M)


def load(ws: Workspace, val: list[tuple[str, str]] = VAL) -> None:
    rows = [Example(f"{split}-{i}", split, text, label, {})
            for split, items in (("train", TRAIN), ("val", val), ("test", TEST))
            for i, (text, label) in enumerate(items)]
    save_task(ws, name=TASK, kind="custom", labels=LABELS, description="Classify a news snippet.",
              source="test", params={}, examples=rows)


def approved(ws: Workspace, text: str, by: str = "carol", kind: str = "self-declared") -> int:
    """An approved heuristic as review leaves it (a teacher's draft approved by ``by``)."""
    with ws.write() as db:
        return int(db["heuristics"].insert({
            "task": TASK, "text": text, "status": "approved", "version": 2,
            "source_rule_ids": "[]", "origin": "consolidate", "created_by": "teacher:x",
            "written_by": "teacher:x", "written_by_kind": "auto", "approved_by": by,
            "approved_at": now(),
            "identity_kind": kind, "created_at": now(), "updated_at": now(),
        }).last_pk)


def setup(ws: Workspace, by: str = "carol", kind: str = "self-declared",
          val: list[tuple[str, str]] = VAL) -> tuple[int, int]:
    load(ws, val)
    return approved(ws, SPORTS, by, kind), approved(ws, FINANCE, by, kind)


def keywords(text: str) -> list[str]:
    return [w.strip() for w in re.split(r",|\bor\b", text) if w.strip()]


def rule_text(words: list[str], label: str) -> str:
    body = words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]
    return f"Texts mentioning {body} are {label}."


def student(body: dict[str, Any]) -> str:
    system = next(m["content"] for m in body["messages"] if m["role"] == "system")
    user = next(m["content"] for m in body["messages"] if m["role"] == "user")
    for _, words, label in RULE.findall(system):
        if any(re.search(rf"\b{re.escape(w)}\b", user) for w in keywords(words)):
            return label
    return "other"


Teacher = Callable[[str, str, list[int]], list[dict[str, Any]]]


def fixing_teacher(extra: dict[str, list[str]]) -> Teacher:
    """Edits the focus rule to also list the extra keywords of its label (if any)."""

    def propose(prompt: str, focus: str, error_ids: list[int]) -> list[dict[str, Any]]:
        m = RULE.match(focus)
        assert m is not None
        words, label = keywords(m.group(2)), m.group(3)
        new = [w for w in extra.get(label, []) if w not in words]
        if not new:
            return []
        return [{"kind": "edit", "text": rule_text(words + new, label),
                 "rationale": f"{label} texts also use {', '.join(new)}",
                 "evidence": error_ids}]

    return propose


def responder(teacher: Teacher) -> Callable[[dict[str, Any]], str]:
    def respond(body: dict[str, Any]) -> str:
        if any(m["role"] == "system" for m in body["messages"]):
            return student(body)
        prompt = body["messages"][0]["content"]
        number = re.search(r"closely related to rule (\d+)", prompt).group(1)  # type: ignore[union-attr]
        focus = next(line for line in prompt.splitlines() if line.startswith(f"{number}. "))
        ids = [int(i) for i in re.findall(r"#(\d+) \(correct label", prompt)]
        return json.dumps({"proposals": teacher(prompt, focus, ids)})

    return respond


def teacher_requests(fake: FakeOpenAI) -> list[dict[str, Any]]:
    return [b for b in fake.requests if not any(m["role"] == "system" for m in b["messages"])]


def student_requests(fake: FakeOpenAI) -> list[dict[str, Any]]:
    return [b for b in fake.requests if any(m["role"] == "system" for m in b["messages"])]


def val_ids(ws: Workspace) -> dict[str, int]:
    return {r["text"]: r["id"] for r in ws.query(
        "SELECT id, text FROM examples WHERE task = ? AND split = 'val'", [TASK])}


def heuristic(ws: Workspace, hid: int) -> dict[str, Any]:
    return ws.query("SELECT * FROM heuristics WHERE id = ?", [hid])[0]


def run(ws: Workspace, fake: FakeOpenAI, **kw: Any) -> state.ResolveSummary:
    kw.setdefault("attribution", "tfidf")
    kw.setdefault("concurrency", 1)
    # The teacher-driven loop; test_measured_harm_becomes_a_remove_proposal covers impact.
    kw.setdefault("impact", False)
    return rs.resolve(ws, TASK, fake.model_string("student"), fake.model_string("teacher"), **kw)


def test_interactive_iteration_proposes_from_val_errors_and_waits(
        ws: Workspace, fake_openai: FakeOpenAI) -> None:
    sports, finance = setup(ws)
    fake_openai.responder = responder(fixing_teacher({"sports": ["team", "cup"],
                                                      "finance": ["bond"]}))

    s = run(ws, fake_openai, iterations=1)

    assert s.stop_reason == "awaiting-review"
    assert (s.iterations_run, s.proposals_made, s.pending) == (0, 2, 2)
    # Only validation items were ever sent, to the student or inside a teacher prompt.
    val_texts = {t for t, _ in VAL}
    assert {b["messages"][-1]["content"] for b in student_requests(fake_openai)} == val_texts
    assert not any("TESTONLY" in json.dumps(b) for b in fake_openai.requests)
    (h,) = s.history
    assert (h["iteration"], h["n_errors"], h["adopted"], h["proposals_made"]) == (1, 3, True, 2)
    assert h["macro_f1"] == pytest.approx((0.5 + 0.8 + 4 / 7) / 3)
    assert s.best_version == h["prompt_version"] == state.best_version(ws, TASK)
    ev = ws.query("SELECT * FROM evaluations WHERE task = ?", [TASK])
    assert [(e["method"], e["split"], e["prompt_version"]) for e in ev] \
        == [("resolve-iter-1", "val", h["prompt_version"])]

    ids = val_ids(ws)
    # As many successes as errors (seeded) went to the teacher, each with its label.
    book = loads(ev[0]["metrics"])["resolve"]
    correct = {ids[t] for t, _ in VAL} - set(book["errors"])
    assert len(book["successes"]) == 3 and set(book["successes"]) <= correct
    shown = {int(i) for b in teacher_requests(fake_openai)
             for i in re.findall(r"#(\d+) \(label:", b["messages"][0]["content"])}
    assert shown == set(book["successes"])
    props = view.list_proposals(ws, TASK, iteration=1)
    by_target = {p["heuristic_id"]: p for p in props}
    assert set(by_target) == {sports, finance}
    assert all((p["kind"], p["status"], p["run_id"]) == ("edit", "pending", s.run_id)
               for p in props)
    assert sorted(by_target[sports]["evidence"]) == sorted(
        [ids[VAL[1][0]], ids[VAL[2][0]]])
    assert by_target[finance]["evidence"] == [ids[VAL[5][0]]]
    assert {(e["gold"], e["predicted"]) for e in by_target[sports]["evidence_examples"]} \
        == {("sports", "other")}
    assert by_target[sports]["text"] == "Texts mentioning goal, match, team or cup are sports."
    # Nothing changed yet: people decide.
    assert heuristic(ws, sports)["text"] == SPORTS

    errors = view.errors_for_iteration(ws, TASK, 1)
    assert [(e["gold"], e["predicted"]) for e in errors] \
        == [("sports", "other"), ("sports", "other"), ("finance", "other")]
    assert [e["heuristics"][0]["id"] for e in errors] == [sports, sports, finance]
    top = errors[0]["heuristics"][0]
    assert (top["number"], top["text"]) == (1, SPORTS)

    # Re-running while proposals are pending calls no model and stores nothing new.
    n = len(fake_openai.requests)
    again = run(ws, fake_openai, iterations=1)
    assert again.stop_reason == "awaiting-review"
    assert len(fake_openai.requests) == n
    assert len(view.list_proposals(ws, TASK)) == 2


def test_decisions_edit_with_four_eyes_then_next_iteration_improves(
        ws: Workspace, fake_openai: FakeOpenAI) -> None:
    sports, finance = setup(ws)
    fake_openai.responder = responder(fixing_teacher({"sports": ["team", "cup"],
                                                      "finance": ["bond"]}))
    first = run(ws, fake_openai, iterations=1)
    props = {p["heuristic_id"]: p for p in view.list_proposals(ws, TASK)}

    decisions.decide_proposal(ws, props[sports]["id"], True, Identity("alice"),
                              comment="good catch")
    decisions.decide_proposal(ws, props[finance]["id"], False, Identity("alice"))

    h = heuristic(ws, sports)
    assert (h["text"], h["status"], h["accepted_by"]) == (props[sports]["text"], "draft", "alice")
    assert h["written_by"].startswith("teacher:")
    assert heuristic(ws, finance)["text"] == FINANCE
    assert heuristic(ws, finance)["status"] == "approved"
    decided = {p["id"]: p for p in view.list_proposals(ws, TASK)}
    assert (decided[props[sports]["id"]]["status"], decided[props[sports]["id"]]["decided_by"]) \
        == ("accepted", "alice")
    assert decided[props[finance]["id"]]["status"] == "rejected"
    audits = ws.query("SELECT * FROM reviews WHERE entity = 'proposal' ORDER BY id")
    assert [(a["entity_id"], a["action"], a["who"]) for a in audits] == [
        (props[sports]["id"], "accept", "alice"), (props[finance]["id"], "reject", "alice")]
    assert audits[0]["comment"] == "good catch"
    assert loads(audits[0]["after"])["heuristic_id"] == sports
    (edit,) = [r for r in review.history(ws, sports) if r["action"] == "edit"]
    assert (edit["who"], edit["before"]["text"], edit["after"]["text"]) \
        == ("alice", SPORTS, props[sports]["text"])
    with pytest.raises(BadInput, match="already accepted"):
        decisions.decide_proposal(ws, props[sports]["id"], False, Identity("bob"))

    # The edited heuristic is a draft: the loop waits for someone other than alice to approve.
    n = len(fake_openai.requests)
    assert run(ws, fake_openai, iterations=1).stop_reason == "awaiting-review"
    assert len(fake_openai.requests) == n
    with pytest.raises(FourEyes):
        approve_seen(ws, sports, Identity("alice"))
    approve_seen(ws, sports, Identity("bob"))

    s = run(ws, fake_openai, iterations=1)

    assert s.stop_reason == "awaiting-review"
    assert [h["iteration"] for h in s.history] == [1, 2]
    one, two = s.history
    assert (one["proposals_made"], one["proposals_accepted"], one["proposals_rejected"]) \
        == (2, 1, 1)
    assert two["adopted"] and two["macro_f1"] > one["macro_f1"] and two["n_errors"] == 1
    assert two["prompt_version"] != one["prompt_version"] == first.best_version
    assert s.best_version == two["prompt_version"]
    prompt = get_prompt(ws, TASK, two["prompt_version"])
    assert (prompt.origin, prompt.parent_version) == ("resolve", one["prompt_version"])
    # Iteration 2 proposes for the one error left: the finance rule again.
    (p2,) = view.list_proposals(ws, TASK, iteration=2)
    assert (p2["heuristic_id"], p2["status"]) == (finance, "pending")


def test_accepting_a_proposal_on_a_heuristic_changed_since_is_stale(
        ws: Workspace, fake_openai: FakeOpenAI) -> None:
    sports, _ = setup(ws)
    fake_openai.responder = responder(fixing_teacher({"sports": ["team"]}))
    run(ws, fake_openai, iterations=1)
    (p,) = view.list_proposals(ws, TASK)
    review.edit(ws, sports, "Texts mentioning goal, match or trophy are sports.", Identity("dave"),
                base_version=heuristic(ws, sports)["version"])

    with pytest.raises(StaleEdit):
        decisions.decide_proposal(ws, p["id"], True, Identity("alice"))

    assert view.list_proposals(ws, TASK)[0]["status"] == "pending"
    assert heuristic(ws, sports)["text"] == "Texts mentioning goal, match or trophy are sports."
    assert not ws.query("SELECT * FROM reviews WHERE entity = 'proposal'")


def test_add_and_remove_proposals(ws: Workspace, fake_openai: FakeOpenAI) -> None:
    sports, finance = setup(ws)

    def teacher(prompt: str, focus: str, ids: list[int]) -> list[dict[str, Any]]:
        if "finance" in focus:
            return [{"kind": "remove", "text": "", "rationale": "misleads", "evidence": ids},
                    {"kind": "add", "text": "Texts mentioning bond or yields are finance.",
                     "rationale": "bonds", "evidence": [f"#{ids[0]}", 999999]}]
        return []

    fake_openai.responder = responder(teacher)
    run(ws, fake_openai, iterations=1)
    props = {p["kind"]: p for p in view.list_proposals(ws, TASK)}
    assert set(props) == {"add", "remove"}
    assert props["add"]["heuristic_id"] is None and props["remove"]["heuristic_id"] == finance
    # Evidence is limited to examples the teacher was shown; "#12" is read as 12.
    assert props["add"]["evidence"] == [val_ids(ws)[VAL[5][0]]]

    decisions.decide_proposal(ws, props["remove"]["id"], True, Identity("alice"))
    decisions.decide_proposal(ws, props["add"]["id"], True, Identity("alice"))

    assert heuristic(ws, finance)["status"] == "rejected"
    (added,) = [r for r in view.list_proposals(ws, TASK) if r["kind"] == "add"]
    new = heuristic(ws, added["created_heuristic_id"])
    assert (new["text"], new["status"], new["accepted_by"], new["origin"]) \
        == ("Texts mentioning bond or yields are finance.", "draft", "alice", "resolve")
    assert new["written_by"].startswith("teacher:")  # the teacher's words, alice accepted them
    assert heuristic(ws, sports)["status"] == "approved"


def test_auto_mode_converges_and_stores_every_iteration(
        ws: Workspace, fake_openai: FakeOpenAI) -> None:
    sports, finance = setup(ws, val=VAL_TWICE)
    # Only the sports rule can be fixed; the finance error stays, so the loop converges.
    fake_openai.responder = responder(fixing_teacher({"sports": ["team", "cup"]}))

    s = run(ws, fake_openai, iterations=3, auto_accept_as=Identity("bench", AUTO))

    assert s.stop_reason == "converged"
    assert [(h["iteration"], h["adopted"], h["n_errors"]) for h in s.history] \
        == [(1, True, 6), (2, True, 2), (3, True, 2)]
    f1 = [h["macro_f1"] for h in s.history]
    assert f1[1] > f1[0] and f1[2] == f1[1]
    assert s.history[2]["delta"] == 0
    assert s.iterations_run == 2
    assert s.best_version == s.history[1]["prompt_version"] == s.history[2]["prompt_version"]
    ev = ws.query("SELECT method, split, prompt_version, metrics FROM evaluations ORDER BY id")
    assert [(e["method"], e["split"]) for e in ev] == [
        ("resolve-iter-1", "val"), ("resolve-iter-2", "val"), ("resolve-iter-3", "val")]
    assert [loads(e["metrics"])["macro_f1"] for e in ev] == f1

    # Accepted by "bench", written by the teacher, approved by "bench": four-eyes holds.
    (p,) = view.list_proposals(ws, TASK, status="accepted")
    assert p["decided_by"] == "bench"
    h = heuristic(ws, sports)
    assert h["text"] == "Texts mentioning goal, match, team or cup are sports."
    assert (h["status"], h["approved_by"], h["identity_kind"]) == ("approved", "bench", "auto")
    assert h["written_by"].startswith("teacher:")
    approval = [r for r in review.history(ws, sports) if r["action"] == "approve"][-1]
    assert approval["comment"] == "auto-accepted (benchmark)"
    assert heuristic(ws, finance)["text"] == FINANCE
    assert not any("TESTONLY" in json.dumps(b) for b in fake_openai.requests)

    # A rerun of a converged loop with unchanged heuristics calls nothing and stores nothing.
    n, n_props = len(fake_openai.requests), len(view.list_proposals(ws, TASK))
    again = run(ws, fake_openai, iterations=3, auto_accept_as=Identity("bench", AUTO))
    assert again.stop_reason == "converged" and again.iterations_run == 0
    assert len(fake_openai.requests) == n
    assert len(view.list_proposals(ws, TASK)) == n_props
    assert len(ws.query("SELECT * FROM evaluations")) == 3


def test_auto_mode_stops_when_no_errors_remain(ws: Workspace, fake_openai: FakeOpenAI) -> None:
    setup(ws)
    fake_openai.responder = responder(fixing_teacher({"sports": ["team", "cup"],
                                                      "finance": ["bond"]}))

    s = run(ws, fake_openai, iterations=3, auto_accept_as=Identity("bench", AUTO))

    assert s.stop_reason == "no-errors"
    assert [(h["n_errors"], h["macro_f1"]) for h in s.history][-1] == (0, 1.0)
    assert s.best_version == s.history[-1]["prompt_version"]


def test_auto_mode_max_iterations_leaves_nothing_unevaluated(
        ws: Workspace, fake_openai: FakeOpenAI) -> None:
    setup(ws, val=VAL_TWICE)
    fake_openai.responder = responder(fixing_teacher({"sports": ["team", "cup"]}))

    s = run(ws, fake_openai, iterations=1, auto_accept_as=Identity("bench", AUTO), val_limit=14)

    # One round: the accepted change is evaluated, and the last version gets no proposals.
    assert s.stop_reason == "max-iterations"
    assert [h["iteration"] for h in s.history] == [1, 2]
    assert (s.history[-1]["proposals_made"], s.history[-1]["stop"]) == (0, "max-iterations")
    assert not view.list_proposals(ws, TASK, status="pending")
    assert len(student_requests(fake_openai)) == 14 + 14
    assert s.history[0]["n"] == 14

    # The next call goes on from there: it proposes for iteration 2 (nothing to fix for the
    # finance error), evaluates the unchanged prompt again and converges.
    again = run(ws, fake_openai, iterations=1, auto_accept_as=Identity("bench", AUTO),
                val_limit=14)
    assert again.stop_reason == "converged"
    assert [h["iteration"] for h in again.history] == [1, 2, 3]


def _broadening_teacher(seen_notes: list[str]) -> Teacher:
    def teacher(prompt: str, focus: str, ids: list[int]) -> list[dict[str, Any]]:
        if "were undone" in prompt:
            seen_notes.append(prompt)
            return []
        if "sports" in focus:  # every val text says "story": all become sports
            return [{"kind": "edit", "text": "Texts mentioning story are sports.",
                     "rationale": "broader", "evidence": ids}]
        return []

    return teacher


def test_regressing_iteration_is_kept_but_not_adopted_and_heuristics_revert(
        ws: Workspace, fake_openai: FakeOpenAI) -> None:
    # The set was signed by the automatic approver itself (a benchmark run), so undoing the
    # loop's own change may restore that same sign-off.
    sports, finance = setup(ws, by="bench", kind="auto")
    before = heuristic(ws, sports)
    seen_notes: list[str] = []
    fake_openai.responder = responder(_broadening_teacher(seen_notes))

    s = run(ws, fake_openai, iterations=3, auto_accept_as=Identity("bench", AUTO))

    one, two, three = s.history
    assert (one["adopted"], two["adopted"], three["adopted"]) == (True, False, True)
    assert two["macro_f1"] < one["macro_f1"] and two["delta"] < 0
    assert two["prompt_version"] != one["prompt_version"]
    assert two["basis_version"] == one["prompt_version"]
    assert s.best_version == one["prompt_version"] == three["prompt_version"]
    assert s.stop_reason == "converged"
    # The regressing prompt and its score are kept for inspection.
    kept = ws.query("SELECT * FROM evaluations WHERE method = 'resolve-iter-2'")[0]
    assert get_prompt(ws, TASK, kept["prompt_version"]).text.count("story are sports") == 1
    # The heuristics are back to the best version's text; the revert row itself approves
    # nothing (a draft), then the automatic approver signs it again in its own row.
    h = heuristic(ws, sports)
    assert (h["text"], h["status"], h["approved_by"]) == (SPORTS, "approved", before["approved_by"])
    hist = review.history(ws, sports)
    i = next(i for i, r in enumerate(hist) if r["action"] == "revert")
    assert (hist[i]["who"], hist[i]["after"]["status"]) == ("pld:resolve", "draft")
    assert (hist[i + 1]["action"], hist[i + 1]["who"], hist[i + 1]["identity_kind"]) \
        == ("approve", "bench", "auto")
    assert "iteration 2" in hist[i]["comment"]
    assert heuristic(ws, finance)["status"] == "approved"
    # The teacher was told what was tried and undone.
    assert seen_notes and "Texts mentioning story are sports." in seen_notes[0]


def test_regression_reverts_an_added_heuristic(ws: Workspace, fake_openai: FakeOpenAI) -> None:
    sports, finance = setup(ws)

    def teacher(prompt: str, focus: str, ids: list[int]) -> list[dict[str, Any]]:
        if "were undone" in prompt or "finance" in focus:
            return []
        return [{"kind": "add", "text": "Texts mentioning story are finance.",
                 "rationale": "x", "evidence": ids}]

    fake_openai.responder = responder(teacher)

    s = run(ws, fake_openai, iterations=2, auto_accept_as=Identity("bench", AUTO))

    assert [h["adopted"] for h in s.history][:2] == [True, False]
    added = ws.query("SELECT * FROM heuristics WHERE origin = 'resolve'")
    assert [(a["text"], a["status"]) for a in added] \
        == [("Texts mentioning story are finance.", "rejected")]
    assert {r["id"] for r in review.approved_heuristics(ws, TASK)} == {sports, finance}


def test_teacher_reply_that_is_not_json_is_asked_again(
        ws: Workspace, fake_openai: FakeOpenAI) -> None:
    setup(ws)
    good = responder(fixing_teacher({"sports": ["team"]}))
    asked: list[int] = []

    def respond(body: dict[str, Any]) -> str:
        if any(m["role"] == "system" for m in body["messages"]):
            return good(body)
        asked.append(len(body["messages"]))
        if len(body["messages"]) == 1:
            return "Sure! Here are my ideas: make rule 1 broader."
        return good({**body, "messages": body["messages"][:1]})

    fake_openai.responder = respond

    s = run(ws, fake_openai, iterations=1)

    assert s.stop_reason == "awaiting-review" and s.proposals_made == 1
    assert sorted(set(asked)) == [1, 3]


def test_not_ready_and_bad_input(ws: Workspace, fake_openai: FakeOpenAI) -> None:
    load(ws)
    with pytest.raises(NotReady, match="approved heuristics"):
        run(ws, fake_openai)
    with pytest.raises(BadInput, match="student"):
        rs.resolve(ws, TASK, "nope/x", fake_openai.model_string())
    with pytest.raises(BadInput, match="teacher"):
        rs.resolve(ws, TASK, fake_openai.model_string(), "local/huge")
    with pytest.raises(BadInput, match="iterations"):
        run(ws, fake_openai, iterations=0)
    with pytest.raises(BadInput):
        run(ws, fake_openai, attribution="word2vec")
    with pytest.raises(BadInput, match="teacher:"):
        run(ws, fake_openai, auto_accept_as=Identity("teacher:me", AUTO))
    with pytest.raises(BadInput, match="proposal 42 not found"):
        decisions.decide_proposal(ws, 42, True, Identity("alice"))
    with pytest.raises(BadInput, match="status"):
        view.list_proposals(ws, TASK, status="maybe")
    assert not fake_openai.requests

    save_task(ws, name="empty", kind="custom", labels=LABELS, description="", source="test",
              params={}, examples=[Example("t0", "train", "x", "other", {})])
    with pytest.raises(NotReady, match="validation"):
        rs.resolve(ws, "empty", fake_openai.model_string(), fake_openai.model_string())


def test_a_non_validation_item_in_the_loop_is_refused(
        ws: Workspace, fake_openai: FakeOpenAI) -> None:
    setup(ws)
    fake_openai.responder = responder(fixing_teacher({}))
    s = run(ws, fake_openai, iterations=1)
    run_id = s.history[0]["run_id"]
    test_id = ws.query("SELECT id FROM examples WHERE split = 'test' LIMIT 1")[0]["id"]
    with ws.write() as db:
        db["predictions"].insert({"run_id": run_id, "example_id": test_id, "raw": "other",
                                  "label": "other", "correct": 0, "created_at": now()})

    with pytest.raises(state.SplitLeakError):
        view.errors_for_iteration(ws, TASK, 1)


def test_parse_reply() -> None:
    reply = '```json\n{"proposals": [{"kind": "Edit", "text": " new ", "rationale": "r", ' \
            '"evidence": ["#3", 4]}]}\n```'
    assert proposals.parse_reply(reply) == [
        {"kind": "edit", "text": "new", "rationale": "r", "evidence": [3, 4]}]
    assert proposals.parse_reply('{"proposals": []}') == []
    for bad in ("no json", '{"ideas": []}', '{"proposals": [{"kind": "merge", "text": "x"}]}',
                '{"proposals": [{"kind": "add", "text": ""}]}',
                '{"proposals": [{"kind": "add", "text": "x", "evidence": ["example"]}]}'):
        with pytest.raises(proposals.BadReplyError):
            proposals.parse_reply(bad)


def test_tfidf_attribution_is_deterministic() -> None:
    texts = ["A sports story: the team lifted the cup.", "A finance story: bond yields climbed.",
             "nothing in common"]
    got = proposals.attribute(texts, [SPORTS, FINANCE], method="tfidf", top_k=2)
    assert [g[0][0] for g in got] == [0, 1, 0]  # no overlap: ties keep the rules' order
    assert got[2] == [(0, 0.0), (1, 0.0)]
    assert got == proposals.attribute(texts, [SPORTS, FINANCE], method="tfidf", top_k=2)
    assert proposals.attribute([], [SPORTS]) == []


def test_embedding_attribution_groups_by_meaning() -> None:
    texts = ["The striker scored twice and the team lifted the trophy.",
             "Shares slid as investors sold off their holdings."]
    got = proposals.attribute(texts, ["If the text is about a sporting contest, it is sports.",
                               "If the text is about markets or money, it is finance."],
                       method="minilm", top_k=1)
    assert [g[0][0] for g in got] == [0, 1]
    assert all(0 < g[0][1] <= 1 for g in got)


def test_evaluation_rows_carry_dumps_compatible_metrics(
        ws: Workspace, fake_openai: FakeOpenAI) -> None:
    setup(ws)
    fake_openai.responder = responder(fixing_teacher({}))
    run(ws, fake_openai, iterations=1)
    ev = ws.query("SELECT * FROM evaluations ORDER BY id")[0]
    metrics = loads(ev["metrics"])
    assert {"macro_f1", "accuracy", "per_label", "confusion", "ci"} <= set(metrics)
    assert metrics["resolve"]["iteration"] == 1
    assert dumps(metrics)  # stays JSON-serialisable after the bookkeeping is added


def test_regression_reverts_with_an_approver_list(ws: Workspace,
                                                  fake_openai: FakeOpenAI) -> None:
    """Undoing an adopted heuristic is the loop's bookkeeping, not a reviewer's rejection:
    it works when only named approvers may reject."""
    sports, finance = setup(ws)
    signoff.add_approver(ws, TASK, "bench", Identity("bench"))

    def teacher(prompt: str, focus: str, ids: list[int]) -> list[dict[str, Any]]:
        if "were undone" in prompt or "finance" in focus:
            return []
        return [{"kind": "add", "text": "Texts mentioning story are finance.",
                 "rationale": "x", "evidence": ids}]

    fake_openai.responder = responder(teacher)

    s = run(ws, fake_openai, iterations=2, auto_accept_as=Identity("bench", AUTO))

    assert [h["adopted"] for h in s.history][:2] == [True, False]
    [added] = ws.query("SELECT * FROM heuristics WHERE origin = 'resolve'")
    assert added["status"] == "rejected"
    last = review.history(ws, added["id"])[-1]
    assert (last["action"], last["who"], last["identity_kind"]) == ("revert", "pld:resolve",
                                                                    "auto")
    assert {r["id"] for r in review.approved_heuristics(ws, TASK)} == {sports, finance}


def test_every_teacher_call_failing_stops_the_loop_until_asked_to_retry(
        ws: Workspace, fake_openai: FakeOpenAI) -> None:
    setup(ws)
    good = responder(fixing_teacher({"sports": ["team"]}))
    teacher_ok = False

    def respond(body: dict[str, Any]) -> str:
        if any(m["role"] == "system" for m in body["messages"]) or teacher_ok:
            return good(body)
        return "Sure! Here are my ideas: make rule 1 broader."  # not JSON, also when re-asked

    fake_openai.responder = respond

    s = run(ws, fake_openai, iterations=1)
    assert s.stop_reason == "teacher-failed" and s.proposals_made == 0
    assert s.failed_groups and all("unusable reply twice" in e for e in s.failed_groups.values())
    (record,) = view.iteration_history(ws, TASK)
    assert record.get("stop") == "teacher-failed"
    assert not ws.query("SELECT 1 FROM proposals")

    asked = len(teacher_requests(fake_openai))
    again = run(ws, fake_openai, iterations=1)  # a deterministic failure is not asked again
    assert again.stop_reason == "teacher-failed"
    assert len(teacher_requests(fake_openai)) == asked

    teacher_ok = True
    retried = run(ws, fake_openai, iterations=1, retry_failed=True)
    assert retried.stop_reason == "awaiting-review" and retried.proposals_made == 1


def test_measured_harm_becomes_a_remove_proposal(ws: Workspace,
                                                 fake_openai: FakeOpenAI) -> None:
    load(ws)
    harmful = approved(ws, "Texts mentioning story are other.")
    sports, finance = approved(ws, SPORTS), approved(ws, FINANCE)
    fake_openai.responder = responder(lambda prompt, focus, ids: [])  # the teacher has nothing

    s = run(ws, fake_openai, impact=True)
    assert s.stop_reason == "awaiting-review"
    [p] = view.list_proposals(ws, TASK, status="pending")
    assert (p["kind"], p["heuristic_id"]) == ("remove", harmful)
    assert p["rationale"].startswith("Measured, not proposed by the teacher")
    report = impact.measure_impact(ws, TASK, fake_openai.model_string("student"))
    [worst] = [h for h in report["heuristics"] if h["harmful"]]
    assert worst["heuristic_id"] == harmful and worst["effect"] < 0
    # The answers it breaks: the items a keyword rule gets right once it is gone.
    ids = val_ids(ws)
    assert set(worst["breaks"]) == {ids[VAL[0][0]], ids[VAL[3][0]], ids[VAL[4][0]]}
    assert p["evidence"] == worst["breaks"] + worst["fixes"]
    # Evidence is measured on validation only: no test item was ever sent.
    assert not any("TESTONLY" in json.dumps(b) for b in fake_openai.requests)

    decisions.decide_proposal(ws, p["id"], True, Identity("dana"))
    s = run(ws, fake_openai, impact=True)
    assert heuristic(ws, harmful)["status"] == "rejected"
    best = state.best_version(ws, TASK, fake_openai.model_string("student"))
    assert get_prompt(ws, TASK, best).heuristic_ids == [sports, finance]


def test_removing_every_heuristic_makes_the_rule_free_prompt_a_candidate(
        ws: Workspace, fake_openai: FakeOpenAI) -> None:
    # Mostly "other" stories: the student's own default is right for most of them.
    load(ws, val=[*VAL[5:], ("A travel story: the train was late.", "other"),
                  ("A music story: the band played on.", "other"),
                  ("A garden story: the roses bloomed.", "other")])
    only = approved(ws, "Texts mentioning story are sports.")
    fake_openai.responder = responder(lambda prompt, focus, ids: [])
    s = run(ws, fake_openai, impact=True, auto_accept_as=Identity("dana", AUTO), iterations=3)
    assert heuristic(ws, only)["status"] == "rejected"
    history = view.iteration_history(ws, TASK)
    # Without the rule that sends every story to "other", validation macro-F1 cannot be lower:
    # the rule-free prompt is adopted, and the loop stops there.
    assert history[1]["adopted"] and history[1]["macro_f1"] >= history[0]["macro_f1"]
    best = state.best_version(ws, TASK, fake_openai.model_string("student"))
    assert get_prompt(ws, TASK, best).heuristic_ids == []
    assert s.stop_reason in ("converged", "no-errors", "max-iterations")


def test_revert_never_restores_a_persons_approval(ws: Workspace,
                                                  fake_openai: FakeOpenAI) -> None:
    # Before: the revert gave the heuristic back carol's approval, written by the loop.
    sports, finance = setup(ws)  # approved by carol, a person
    fake_openai.responder = responder(_broadening_teacher([]))

    s = run(ws, fake_openai, iterations=3, auto_accept_as=Identity("bench", AUTO))

    assert [h["adopted"] for h in s.history] == [True, False]
    h = heuristic(ws, sports)
    assert (h["text"], h["status"], h["approved_by"]) == (SPORTS, "draft", None)
    assert s.stop_reason == "awaiting-review"  # people must approve the restored text
    record = state.iteration_record(ws, TASK, 2)
    assert record["reverted_to_draft"] == [sports]
    after_revert = [r for r in review.history(ws, sports)
                    if r["action"] == "approve" and r["id"] > min(
                        x["id"] for x in review.history(ws, sports) if x["action"] == "revert")]
    assert after_revert == []
    assert heuristic(ws, finance)["status"] == "approved"


def test_revert_leaves_what_people_decided_alone(ws: Workspace,
                                                 fake_openai: FakeOpenAI) -> None:
    # Before: a heuristic a person rejected after the loop's change was approved again, and a
    # proposal alice accepted (and dave approved) was undone as if the loop had made it.
    sports, finance = setup(ws, val=VAL_TWICE)
    fake_openai.responder = responder(_broadening_teacher([]))
    run(ws, fake_openai, iterations=1)
    (prop,) = [p for p in view.list_proposals(ws, TASK) if p["heuristic_id"] == sports]
    decisions.decide_proposal(ws, prop["id"], True, Identity("alice"))
    approve_seen(ws, sports, Identity("dave"))
    review.reject(ws, finance, Identity("erin"), base_version=heuristic(ws, finance)["version"],
                  comment="outdated")

    s = run(ws, fake_openai, iterations=1)

    assert [h["adopted"] for h in s.history] == [True, False]
    assert heuristic(ws, finance)["status"] == "rejected"  # erin's decision stands
    h = heuristic(ws, sports)  # alice's accepted edit, dave's approval: people decided it
    assert (h["text"], h["status"], h["approved_by"]) \
        == ("Texts mentioning story are sports.", "approved", "dave")
    record = state.iteration_record(ws, TASK, 2)
    assert (record["reverted_to_draft"], record["not_reverted"]) == ([], [sports, finance])
    # People made it, but it is clearly worse: the paired CI lies below zero.
    assert record["comparison"]["verdict"] == "worse" and record["comparison"]["ci"][1] < 0
    assert not ws.query("SELECT 1 FROM reviews WHERE who = 'pld:resolve' AND action = 'revert'")


def test_a_dropped_proposal_is_recorded_with_its_reason(ws: Workspace,
                                                        fake_openai: FakeOpenAI) -> None:
    # Before: the loop dropped an edit whose text equalled the current heuristic and said
    # "0 proposals" with no why.
    setup(ws)

    def same_text(prompt: str, focus: str, ids: list[int]) -> list[dict[str, Any]]:
        text = focus.split(". ", 1)[1]
        return [{"kind": "edit", "text": text, "rationale": "keep it", "evidence": ids}]

    fake_openai.responder = responder(same_text)
    s = run(ws, fake_openai, iterations=1)
    [h] = [h for h in view.iteration_history(ws, TASK) if h["iteration"] == 1]
    assert h["proposals_made"] == 0 and h["dropped"]
    assert all(d["reason"] == "its text is already a current heuristic's, word for word"
               for d in h["dropped"])
    words = view.stop_in_words(ws, h, 0, 0)
    assert words.startswith("After iteration 1 the loop stopped because")
    assert "the teacher proposed nothing that could be kept" in words
    assert f"{len(h['dropped'])} proposal(s) of the teacher were dropped" in words
    # With nothing to change, the next iteration scores the same prompt: converged.
    assert s.stop_reason == "converged"


@pytest.mark.parametrize("rejecter", ["erin", "bench"])
def test_revert_leaves_a_persons_rejection_alone(
        ws: Workspace, fake_openai: FakeOpenAI, rejecter: str) -> None:
    # Before: with --auto-accept-as, erin's accepted `remove` counted as the loop's own change,
    # so a later revert restored the heuristic and the automatic approver re-signed it (trail:
    # erin reject -> pld:resolve revert draft -> bench approve "re-approved after revert").
    # A person who calls herself "bench" (self-declared) is not the automatic approver either.
    sports, finance = setup(ws, by="bench", kind="auto")

    def teacher(prompt: str, focus: str, ids: list[int]) -> list[dict[str, Any]]:
        if "were undone" in prompt or "finance" not in focus:
            return []
        return [{"kind": "remove", "text": "", "rationale": "misleads", "evidence": ids}]

    fake_openai.responder = responder(teacher)
    run(ws, fake_openai, iterations=1)
    (prop,) = view.list_proposals(ws, TASK, status="pending")
    assert (prop["kind"], prop["heuristic_id"]) == ("remove", finance)
    if rejecter == "erin":
        decisions.decide_proposal(ws, prop["id"], True, Identity("erin"))
    else:
        decisions.decide_proposal(ws, prop["id"], False, Identity("erin"))
        review.reject(ws, finance, Identity("bench"),
                      base_version=heuristic(ws, finance)["version"], comment="outdated")
    assert heuristic(ws, finance)["status"] == "rejected"

    s = run(ws, fake_openai, iterations=1, auto_accept_as=Identity("bench", AUTO))

    assert [h["adopted"] for h in s.history] == [True, False]  # without finance: worse
    h = heuristic(ws, finance)
    assert (h["status"], h["approved_by"]) == ("rejected", None)  # erin's decision stands
    assert [(r["who"], r["action"]) for r in review.history(ws, finance)][-1] \
        == (rejecter, "reject")
    record = state.iteration_record(ws, TASK, 2)
    assert (record["reverted_to_draft"], record["not_reverted"]) == ([], [finance])
    assert not ws.query("SELECT 1 FROM reviews WHERE comment LIKE '%re-approved after revert%'")
    assert heuristic(ws, sports)["status"] == "approved"
