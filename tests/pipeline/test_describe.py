"""Task descriptions: the teacher drafts one from labelled examples, a person keeps it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pld import preamble, signoff
from pld.approvers import NotApprover
from pld.errors import BadInput
from pld.identity import Identity
from pld.pipeline.describe import draft_description, sample_examples
from pld.tasks.store import task_info
from pld.workspace import Workspace
from tests.cli.test_contract import pld
from tests.fakes.openai_server import FakeOpenAI
from tests.pipeline.test_student import TASK, load_reviews

DRAFT = "Each input is one short product review. pos: praise; neg: criticism; neutral: neither."


def teacher(body: dict[str, Any]) -> str:
    return json.dumps({"description": DRAFT})


def test_draft_reads_a_stratified_training_sample(ws: Workspace,
                                                  fake_openai: FakeOpenAI) -> None:
    load_reviews(ws)
    fake_openai.responder = teacher
    assert draft_description(ws, TASK, fake_openai.model_string()) == DRAFT
    prompt = fake_openai.requests[0]["messages"][0]["content"]
    sample = sample_examples(ws, TASK)
    assert sorted(r["label"] for r in sample) == sorted(["pos", "neg", "neutral"] * 3)
    assert all(r["text"].startswith("train ") for r in sample)
    for r in sample:
        assert f"{r['text']}\nLabel: {r['label']}" in prompt
    assert "val review" not in prompt and "test review" not in prompt
    # Drafting keeps nothing.
    assert task_info(ws, TASK).description != DRAFT


def test_keeping_a_description_is_audited_and_never_overwrites_a_newer_one(
        ws: Workspace) -> None:
    load_reviews(ws)
    before = task_info(ws, TASK).description
    assert preamble.set_description(ws, TASK, DRAFT, Identity("ana"), base=before)
    assert task_info(ws, TASK).description == DRAFT
    [row] = ws.query("SELECT * FROM reviews WHERE entity = 'task'")
    assert (row["who"], row["action"]) == ("ana", "describe")
    assert json.loads(row["before"])["description"] == before
    with pytest.raises(preamble.StaleDescription, match="changed since you read it"):
        preamble.set_description(ws, TASK, "Another one.", Identity("bo"), base=before)
    assert not preamble.set_description(ws, TASK, DRAFT, Identity("bo"), base=DRAFT)
    signoff.add_approver(ws, TASK, "ana", Identity("ana"))
    with pytest.raises(NotApprover):
        preamble.set_description(ws, TASK, "Mine.", Identity("bo"), base=DRAFT)
    with pytest.raises(BadInput, match="empty"):
        preamble.set_description(ws, TASK, "  ", Identity("ana"))


def test_describe_command_drafts_then_keeps(ws: Workspace, ws_path: Path,
                                            fake_openai: FakeOpenAI) -> None:
    load_reviews(ws)
    fake_openai.responder = teacher
    model = fake_openai.model_string()
    r = pld("describe", TASK, "--teacher", model, "--json", ws=ws_path)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) | {"previous": None} == {
        "task": TASK, "description": DRAFT, "kept": False, "previous": None}
    assert task_info(ws, TASK).description != DRAFT
    r = pld("describe", TASK, "--teacher", model, "--keep", "--as", "ana", ws=ws_path)
    assert r.returncode == 0, r.stderr
    assert "kept as the description" in r.stdout
    assert task_info(ws, TASK).description == DRAFT
    r = pld("describe", TASK, "--text", "Edited by hand.", "--as", "bo", ws=ws_path)
    assert r.returncode == 0 and task_info(ws, TASK).description == "Edited by hand."
    bad = pld("describe", TASK, "--keep", "--teacher", model, ws=ws_path)
    assert bad.returncode == 2 and "--as NAME" in bad.stderr
