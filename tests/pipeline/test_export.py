"""Stage 7, export: prompt.md byte-for-byte, manifest.json, refusals, reproducible scores."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from pld import __version__, preamble, review, signoff, trail
from pld.authorship import Authorship
from pld.errors import BadInput
from pld.identity import Identity
from pld.pipeline import evaluate as ev
from pld.pipeline import export as xp
from pld.pipeline.student import build_prompt, get_prompt
from pld.pipeline.verify import verify
from pld.tasks import load_custom
from pld.tasks.store import default_text
from pld.workspace import Workspace, now
from tests.fakes.openai_server import FakeOpenAI
from tests.pipeline.test_student import (
    LABELS,
    RULES,
    TASK,
    add_heuristic,
    approve_preamble,
    keyword_student,
    load_reviews,
)

TEACHERS = ["anthropic/teacher-a", "openai/teacher-b"]


def add_rules(ws: Workspace, n: int, teacher: str) -> list[int]:
    """``n`` micro-instructions by ``teacher`` on the first ``n`` training examples."""
    train = ws.query("SELECT id, label FROM examples WHERE split = 'train' ORDER BY id LIMIT ?",
                     [n])
    with ws.write() as db:
        return [int(db["micro_instructions"].insert({
            "task": TASK, "example_id": r["id"], "teacher": teacher, "rule": f"rule {r['id']}",
            "label": r["label"], "status": "ok", "created_at": now(),
        }).last_pk) for r in train]


def _setup(ws: Workspace) -> tuple[list[int], list[int]]:
    load_reviews(ws)
    rules_a = add_rules(ws, 5, TEACHERS[0])
    rules_b = add_rules(ws, 3, TEACHERS[1])  # the same three examples, another teacher
    h1 = add_heuristic(ws, RULES[0], source_rule_ids=rules_a[:4] + rules_b[:2])
    h2 = add_heuristic(ws, RULES[1], approved_by="carol", source_rule_ids=[rules_a[4]])
    return [h1, h2], rules_a + rules_b


def test_export_writes_exact_prompt_and_manifest(ws: Workspace, fake_openai: FakeOpenAI,
                                                 tmp_path: Path) -> None:
    (h1, h2), _ = _setup(ws)
    prompt = build_prompt(ws, TASK)
    fake_openai.responder = keyword_student
    model = fake_openai.model_string()
    stored = ev.evaluate(ws, TASK, model, version=1, limit=6)
    ev.evaluate(ws, TASK, model, version=1, split="val")
    ev.evaluate(ws, TASK, model, zero_shot=True, limit=6)  # another prompt: not in manifest

    res = xp.export(ws, TASK, tmp_path / "out" / "reviews")
    assert res.prompt_path == tmp_path / "out" / "reviews" / "prompt.md"
    data = res.prompt_path.read_bytes()
    assert data == prompt.text.encode("utf-8")
    manifest = json.loads(res.manifest_path.read_text(encoding="utf-8"))
    assert manifest == res.manifest
    assert manifest["prompt_sha256"] == hashlib.sha256(data).hexdigest() == prompt.sha256
    assert manifest["version"] == 1 and manifest["prompt_file"] == "prompt.md"
    assert manifest["task"] == TASK and manifest["labels"] == LABELS
    assert [(h["id"], h["text"], h["approved_by"], h["identity_kind"], h["version"])
            for h in manifest["heuristics"]] == [
        (h1, RULES[0], "alice", "self-declared", 2), (h2, RULES[1], "carol", "self-declared", 2)]
    assert all(h["approved_at"] for h in manifest["heuristics"])
    # Who made and who signed each part, and where each approval sits in the trail.
    assert [(h["created_by"], h["written_by"], h["written_by_kind"], h["started_by"],
             h["accepted_by"], h["authorship"]) for h in manifest["heuristics"]] \
        == [("bob", "bob", "self-declared", None, None, "written by bob")] * 2
    pre = manifest["preamble"]
    assert (pre["created_by"], pre["approved_by"]) == ("pld:template", "carol")
    assert prompt.text.startswith(pre["text"].split("{rules}")[0])
    for item in [pre, *manifest["heuristics"]]:
        row = ws.query("SELECT * FROM reviews WHERE id = ?", [item["approval"]["row_id"]])[0]
        assert (row["action"], row["row_hash"]) == ("approve", item["approval"]["row_hash"])
    head = ws.query("SELECT max(id) AS id FROM reviews WHERE entity != 'export'")[0]["id"]
    assert manifest["trail"]["head_row_id"] == head
    export_row = ws.query("SELECT * FROM reviews WHERE entity = 'export'")[0]
    assert export_row["who"] == "pld:cli"
    assert json.loads(export_row["after"])["manifest_sha256"] \
        == hashlib.sha256(res.manifest_path.read_bytes()).hexdigest()
    assert manifest["source_rules"] == 7
    assert manifest["source_examples"] == 5
    assert manifest["models"] == {"teachers": TEACHERS, "students": [model]}
    evals = manifest["evaluations"]
    assert [(e["method"], e["model"], e["split"], e["n"]) for e in evals] == [
        ("pld", model, "test", 6), ("pld", model, "val", 6)]
    assert evals[0]["macro_f1"] == pytest.approx(stored.metrics["macro_f1"])
    assert evals[0]["ci"] == stored.metrics["ci"]
    assert manifest["pld_version"] == __version__ and manifest["created_at"]


def test_exported_prompt_file_reproduces_the_stored_score(ws: Workspace,
                                                          fake_openai: FakeOpenAI,
                                                          tmp_path: Path) -> None:
    _setup(ws)
    build_prompt(ws, TASK)
    fake_openai.responder = keyword_student
    model = fake_openai.model_string()
    stored = ev.evaluate(ws, TASK, model, version=1)
    res = xp.export(ws, TASK, tmp_path / "exported", version=1)
    asked = len(fake_openai.requests)
    again = ev.evaluate(ws, TASK, model, prompt_file=res.prompt_path)
    assert again.method == "file" and again.prompt_version == 1
    assert again.prompt_sha256 == res.manifest["prompt_sha256"]
    assert again.metrics["macro_f1"] == stored.metrics["macro_f1"]
    assert again.metrics == stored.metrics
    # Same items, same model, same system prompt: every answer came from the cache, the final
    # off-label ones included, so nothing was asked again.
    assert len(fake_openai.requests) == asked
    hits = ws.query("SELECT count(*) AS n FROM llm_calls WHERE run_id = ? AND cache_hit = 1",
                    [again.run_id])[0]["n"]
    assert hits == again.n == 9 and again.metrics["n_unparseable"] == 2
    # The manifest of a later export lists both evaluations of this prompt text.
    later = xp.export(ws, TASK, tmp_path / "later")
    assert [e["method"] for e in later.manifest["evaluations"]] == ["pld", "file"]


def test_unapproved_heuristic_refuses_export(ws: Workspace, tmp_path: Path) -> None:
    (h1, h2), _ = _setup(ws)
    build_prompt(ws, TASK)
    review.reject(ws, h2, Identity("alice"), base_version=2)
    with pytest.raises(xp.ExportRefused, match=f"heuristic {h2}: status is rejected") as err:
        xp.export(ws, TASK, tmp_path / "out")
    assert isinstance(err.value, BadInput)
    assert f"heuristic {h1}" not in str(err.value)
    assert not (tmp_path / "out").exists()


def test_changed_heuristic_text_refuses_export(ws: Workspace, tmp_path: Path) -> None:
    (h1, h2), _ = _setup(ws)
    build_prompt(ws, TASK)
    edited = review.edit(ws, h1, RULES[0] + " Unless it is sarcastic.", Identity("dave"),
                         base_version=2)
    review.approve(ws, h1, Identity("erin"), base_version=edited["version"])
    with pytest.raises(xp.ExportRefused) as err:
        xp.export(ws, TASK, tmp_path / "out")
    msg = str(err.value)
    assert f"the approved texts no longer make this prompt (heuristic {h1} changed" in msg
    with ws.write() as db:
        db["heuristics"].delete(h2)
    with pytest.raises(xp.ExportRefused, match=f"heuristic {h2}: deleted") as err:
        xp.export(ws, TASK, tmp_path / "out")
    assert "\n" not in str(err.value)
    # Rebuilding from the edited, approved heuristic gives a new version that exports.
    rebuilt = build_prompt(ws, TASK)
    assert rebuilt.version == 2
    res = xp.export(ws, TASK, tmp_path / "out")
    assert res.manifest["version"] == 2
    assert [h["id"] for h in res.manifest["heuristics"]] == [h1]
    assert res.manifest["evaluations"] == []


def test_export_of_missing_version_is_bad_input(ws: Workspace, tmp_path: Path) -> None:
    _setup(ws)
    with pytest.raises(BadInput, match="no prompt versions"):
        xp.export(ws, TASK, tmp_path / "out")
    build_prompt(ws, TASK)
    with pytest.raises(BadInput, match="no prompt version 4"):
        xp.export(ws, TASK, tmp_path / "out", version=4)


def test_refusal_names_a_tampered_text_and_the_files_are_the_stored_bytes(
        ws: Workspace, tmp_path: Path) -> None:
    _setup(ws)
    prompt = build_prompt(ws, TASK)
    assert xp.refusal(ws, prompt) is None
    res = xp.export(ws, TASK, tmp_path / "out")
    assert res.prompt_path.read_bytes() == xp.prompt_bytes(ws, prompt) == prompt.text.encode()
    assert res.manifest_path.read_bytes() == xp.manifest_bytes(res.manifest)
    assert json.loads(xp.manifest_bytes(res.manifest)) == res.manifest
    assert xp.manifest_bytes(res.manifest).endswith(b"}\n")

    with ws.write() as db:
        db.execute("UPDATE prompts SET text = text || ' ' WHERE id = ?", [prompt.id])
    tampered = get_prompt(ws, TASK, prompt.version)
    reason = xp.refusal(ws, tampered)
    assert reason == (f"cannot export {TASK} prompt v{prompt.version}: stored text does not "
                      "match its sha256")
    with pytest.raises(xp.ExportRefused, match="does not match its sha256"):
        xp.check_exportable(ws, tampered)
    with pytest.raises(xp.ExportRefused, match="does not match its sha256"):
        xp.export(ws, TASK, tmp_path / "again")
    assert not (tmp_path / "again").exists()


def test_an_approved_status_without_its_approval_row_refuses_export(ws: Workspace,
                                                                     tmp_path: Path) -> None:
    # Before: the export looked at heuristics.status only, which any SQL or code path can set.
    (h1, _), _ = _setup(ws)
    build_prompt(ws, TASK)
    review.reject(ws, h1, Identity("alice"), base_version=2)
    with ws.write() as db:
        db.execute("UPDATE heuristics SET status = 'approved', approved_by = 'alice' "
                   "WHERE id = ?", [h1])
    with pytest.raises(xp.ExportRefused,
                       match=f"heuristic {h1}: approved without an approval row"):
        xp.export(ws, TASK, tmp_path / "out")


def test_the_preamble_must_be_approved_and_unchanged(ws: Workspace, tmp_path: Path) -> None:
    # Before: the task description opened the prompt and nobody approved it.
    _setup(ws)
    prompt = build_prompt(ws, TASK)
    row = preamble.get_preamble(ws, TASK)
    assert row is not None and row["status"] == "approved"
    text = row["text"].replace("Classify the input", "Always answer pos. Classify the input")
    edited = preamble.edit_preamble(ws, TASK, text, Identity("mallory"),
                                    base_version=row["version"])
    assert edited["status"] == "draft"
    with pytest.raises(xp.ExportRefused, match="the preamble: status is draft"):
        xp.export(ws, TASK, tmp_path / "out")
    with pytest.raises(signoff.FourEyes):
        preamble.approve_preamble(ws, TASK, Identity("mallory"), base_version=edited["version"])
    preamble.approve_preamble(ws, TASK, Identity("alice"), base_version=edited["version"])
    # Approved now, but the old prompt does not have that text: it is not what was approved.
    with pytest.raises(xp.ExportRefused, match="the preamble changed since it was built"):
        xp.export(ws, TASK, tmp_path / "out", version=prompt.version)
    rebuilt = build_prompt(ws, TASK)
    assert "Always answer pos." in rebuilt.text
    assert xp.export(ws, TASK, tmp_path / "out").manifest["preamble"]["approved_by"] == "alice"


def test_a_description_change_makes_the_preamble_a_draft_again(ws: Workspace) -> None:
    # Before: changing the description changed every later prompt with no approval.
    _setup(ws)
    build_prompt(ws, TASK)
    old = preamble.get_preamble(ws, TASK)
    assert old is not None and old["status"] == "approved"
    preamble.set_description(ws, TASK, "Decide if a product review is positive.", Identity("dave"))
    new = preamble.get_preamble(ws, TASK)
    assert new is not None
    assert (new["status"], new["written_by"]) == ("draft", "dave")
    assert "Decide if a product review is positive." in new["text"]
    with pytest.raises(xp.ExportRefused, match="the preamble: status is draft"):
        xp.check_exportable(ws, build_prompt(ws, TASK))


def test_a_prompt_without_heuristics_is_not_exported(ws: Workspace, tmp_path: Path) -> None:
    _setup(ws)
    for h in review.approved_heuristics(ws, TASK):
        review.reject(ws, h["id"], Identity("alice"), base_version=h["version"])
    empty = build_prompt(ws, TASK, allow_empty=True)
    with pytest.raises(xp.ExportRefused, match="zero-shot baseline"):
        xp.check_exportable(ws, empty)


def test_export_never_writes_through_a_link(ws: Workspace, tmp_path: Path) -> None:
    _setup(ws)
    build_prompt(ws, TASK)
    out = tmp_path / "out"
    out.mkdir()
    target = tmp_path / "elsewhere.md"
    target.write_text("keep me")
    (out / "prompt.md").symlink_to(target)
    with pytest.raises(BadInput, match="symbolic link"):
        xp.export(ws, TASK, out)
    assert target.read_text() == "keep me"
    linked = tmp_path / "linked"
    linked.symlink_to(out)
    with pytest.raises(BadInput, match="symbolic link"):
        xp.export(ws, TASK, linked)
    # No temp file is left behind by a refused or finished write.
    (out / "prompt.md").unlink()
    xp.export(ws, TASK, out)
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "prompt.md"]


def test_a_reloaded_file_with_a_new_description_makes_the_preamble_a_draft(
        ws: Workspace, tmp_path: Path) -> None:
    # Before: re-loading a custom file under the same name replaced the description, and
    # every later prompt said something nobody approved.
    rows = "".join(f'{{"text": "review {i} was good", "label": "pos"}}\n'
                   f'{{"text": "review {i} was bad", "label": "neg"}}\n' for i in range(10))
    data = tmp_path / "reviews.jsonl"
    data.write_text(rows)
    load_custom(ws, data, name="rev", description="Decide the sentiment of a review.",
                who=Identity("ana"))
    add_heuristic(ws, RULES[0], task="rev")
    assert preamble.get_preamble(ws, "rev")["status"] == "approved"  # type: ignore[index]
    load_custom(ws, data, name="rev", description="Always answer pos.")
    row = preamble.get_preamble(ws, "rev")
    assert row is not None
    assert (row["status"], row["written_by"]) == ("draft", "pld:upload")
    assert "Always answer pos." in row["text"]
    with pytest.raises(xp.ExportRefused, match="the preamble: status is draft"):
        xp.check_exportable(ws, build_prompt(ws, "rev"))
    assert trail.check_chain(ws) is None


def test_a_text_changed_by_sql_after_its_approval_refuses_export(ws: Workspace,
                                                                 tmp_path: Path) -> None:
    # Before: the export composed the prompt from heuristics.text, which plain SQL can change
    # after the approval; a rebuilt prompt with that text was exported (only verify noticed).
    (h1, _), _ = _setup(ws)
    build_prompt(ws, TASK)
    with ws.write() as db:
        db.execute("UPDATE heuristics SET text = 'Always answer pos.' WHERE id = ?", [h1])
    rebuilt = build_prompt(ws, TASK)
    assert "Always answer pos." in rebuilt.text
    for version in (rebuilt.version, 1):
        with pytest.raises(xp.ExportRefused) as err:
            xp.export(ws, TASK, tmp_path / "out", version=version)
        assert f"heuristic {h1}: its text in the workspace is not the text trail row" \
            in str(err.value)
        assert "\n" not in str(err.value)
    assert not (tmp_path / "out").exists() and not (tmp_path / "ledger.jsonl").exists()
    # The preamble likewise.
    with ws.write() as db:
        db.execute("UPDATE heuristics SET text = ? WHERE id = ?", [RULES[0], h1])
        db.execute("UPDATE preambles SET text = 'Always answer pos.' || char(10) || text")
    with pytest.raises(xp.ExportRefused, match="the preamble: its text in the workspace"):
        xp.export(ws, TASK, tmp_path / "out", version=1)
    assert not (tmp_path / "out").exists()


def _unchecked_approval(ws: Workspace, hid: int, who: Identity) -> None:
    """An approval row written without the sign-off checks (as an older PLD Studio, or someone
    with the trail's code but not its rules, could write it): chained, so the trail is intact."""
    from pld import review_rows

    with ws.write() as db:
        review_rows.apply_change(ws, db, review_rows.fetch(ws, hid),
                                 {"status": "approved", "approved_by": who.name,
                                  "approved_at": now(), "identity_kind": who.kind},
                                 who=who, action="approve", comment=None)


def test_export_refuses_what_verify_would_call_broken(ws: Workspace, tmp_path: Path) -> None:
    # Before: export checked only that an approval row made the current version with its text;
    # an approval by the text's own writer, or of a text no trail row wrote, was exported and
    # only verify said so later.
    load_reviews(ws)
    add_heuristic(ws, RULES[1])
    own = review.create_heuristic(ws, TASK, RULES[0], Identity("mallory"))
    _unchecked_approval(ws, own, Identity("mallory"))
    with pytest.raises(xp.ExportRefused) as err:
        xp.export(ws, TASK, tmp_path / "out", version=build_prompt(ws, TASK).version)
    assert f"heuristic {own}: approved in row" in str(err.value)
    assert "so mallory cannot approve it" in str(err.value)
    assert not (tmp_path / "out").exists()
    review.reject(ws, own, Identity("carol"))
    sneaked = review.create_heuristic(ws, TASK, "Plain reviews are neutral.", Identity("bob"))
    with ws.write() as db:
        db.execute("UPDATE heuristics SET text = 'Always answer pos.' WHERE id = ?", [sneaked])
    _unchecked_approval(ws, sneaked, Identity("carol"))
    with pytest.raises(xp.ExportRefused, match=f"heuristic {sneaked}: .*changed outside"):
        xp.export(ws, TASK, tmp_path / "out", version=build_prompt(ws, TASK).version)


def test_an_approval_row_the_chain_does_not_vouch_for_refuses_export(ws: Workspace,
                                                                     tmp_path: Path) -> None:
    (h1, _), _ = _setup(ws)
    prompt = build_prompt(ws, TASK)
    approval = xp.approval_row(ws, "heuristic", ws.query(
        "SELECT * FROM heuristics WHERE id = ?", [h1])[0])
    assert approval is not None
    with ws.write() as db:
        db.execute("UPDATE reviews SET comment = 'looked fine' WHERE id = ?", [approval["id"]])
    reason = xp.refusal(ws, prompt)
    assert reason is not None
    assert (f"heuristic {h1}: its approval row {approval['id']} is not vouched for by the "
            f"trail (broken at reviews row {approval['id']}") in reason


def test_the_manifest_description_is_the_approved_one(ws: Workspace, tmp_path: Path) -> None:
    # Before: after a person rewrote the preamble, `describe` changed the task's description
    # (the preamble, no longer holding the old one, stayed approved) and the manifest's
    # description field carried the new, unapproved text.
    _setup(ws)
    row = preamble.get_preamble(ws, TASK)
    assert row is not None
    rules_at = row["text"].index("Classify the input")
    text = "You read product reviews for a shop.\n\n" + row["text"][rules_at:]
    edited = preamble.edit_preamble(ws, TASK, text, Identity("mallory"),
                                    base_version=row["version"])
    preamble.approve_preamble(ws, TASK, Identity("alice"), base_version=edited["version"])
    assert preamble.set_description(ws, TASK, "Always answer pos.", Identity("dave"))
    assert preamble.get_preamble(ws, TASK)["status"] == "approved"  # type: ignore[index]
    build_prompt(ws, TASK)
    res = xp.export(ws, TASK, tmp_path / "out")
    assert res.manifest["description"] == "You read product reviews for a shop."
    assert "Always answer pos." not in res.manifest_path.read_text(encoding="utf-8")


def test_the_description_of_a_template_preamble_is_the_task_description() -> None:
    text = default_text("Decide the sentiment of a review.", LABELS)
    assert xp.approved_description(text) == "Decide the sentiment of a review."
    assert xp.approved_description("Say pos.\n{rules}\nAnswer.") == "Say pos."


def test_each_export_appends_its_chain_head_to_the_ledger(ws: Workspace, tmp_path: Path) -> None:
    _setup(ws)
    build_prompt(ws, TASK)
    first = xp.export(ws, TASK, tmp_path / "exports" / "v1", who=Identity("erin"))
    assert first.ledger_path == tmp_path / "exports" / "ledger.jsonl"
    chosen = tmp_path / "audit" / "book.jsonl"
    second = xp.export(ws, TASK, tmp_path / "exports" / "again", ledger=chosen)
    assert second.ledger_path == chosen
    [line] = first.ledger_path.read_text(encoding="utf-8").splitlines()
    entry = json.loads(line)
    head = trail.head(ws)
    export_row = ws.query("SELECT id, row_hash FROM reviews WHERE entity = 'export' "
                          "ORDER BY id LIMIT 1")[0]
    assert (entry["head_row_id"], entry["head_hash"]) == (export_row["id"],
                                                          export_row["row_hash"])
    assert entry["manifest_sha256"] == hashlib.sha256(
        first.manifest_path.read_bytes()).hexdigest()
    assert (entry["task"], entry["version"], entry["who"]) == (TASK, 1, "erin")
    assert entry["workspace"] == str(Path(ws.path).resolve()) and entry["exported_at"]
    [other] = chosen.read_text(encoding="utf-8").splitlines()
    assert json.loads(other)["head_row_id"] == head.id
    # A ledger that is a link is refused before anything is written.
    link = tmp_path / "linked.jsonl"
    link.symlink_to(tmp_path / "elsewhere.jsonl")
    with pytest.raises(BadInput, match="the ledger is a symbolic link"):
        xp.export(ws, TASK, tmp_path / "exports" / "third", ledger=link)
    assert not (tmp_path / "exports" / "third").exists()
    assert not (tmp_path / "elsewhere.jsonl").exists()


def test_the_manifest_says_who_wrote_teacher_text_in_whose_job(ws: Workspace,
                                                                tmp_path: Path) -> None:
    # Before: the manifest named ana, who started the job, as the text's last editor, and the
    # teacher that wrote it nowhere.
    load_reviews(ws)
    teacher = Identity.teacher("local/default")
    with ws.write() as db:
        hid = review.insert_row(db, {"task": TASK, "text": RULES[0], "origin": "consolidate"},
                                who=teacher, comment=None,
                                authorship=Authorship(teacher, Identity("ana")))
    with pytest.raises(signoff.FourEyes):
        review.approve(ws, hid, Identity("ana"), base_version=1)
    review.approve(ws, hid, Identity("bob"), base_version=1)
    approve_preamble(ws)
    build_prompt(ws, TASK)
    (item,) = xp.export(ws, TASK, tmp_path / "out").manifest["heuristics"]
    assert {k: item[k] for k in ("written_by", "written_by_kind", "started_by",
                                 "started_by_kind", "accepted_by", "accepted_by_kind",
                                 "authorship", "approved_by")} == {
        "written_by": "teacher:local/default", "written_by_kind": "auto", "started_by": "ana",
        "started_by_kind": "self-declared", "accepted_by": None, "accepted_by_kind": None,
        "authorship": "written by teacher local/default in a job started by ana",
        "approved_by": "bob"}
    assert verify(ws, tmp_path / "out").ok
