"""Reading extracted rules back: filters and paging in SQL, one rule with its example and call."""

from __future__ import annotations

import json
from typing import Any

import pytest

from pld.errors import BadInput
from pld.pipeline.extract.browse import count_rules, get_rule, list_rules
from pld.pipeline.extract.stage import SCHEMA, extract
from pld.workspace import Workspace
from tests.fakes.openai_server import FakeOpenAI
from tests.pipeline.extract.test_stage import TEXTS, first_user, gold, good_reply, make_task, rows


def _mixed_workspace(ws: Workspace, fake: FakeOpenAI) -> None:
    make_task(ws, n=9)

    def responder(body: dict[str, Any]) -> str:
        text, label = first_user(body), gold(body)
        if TEXTS[8] in text:
            return "broken"
        if label == "technical":
            return json.dumps({"reasoning": "Software fault.", "rule": "The label is technical."})
        return good_reply(body)

    fake.responder = responder
    extract(ws, "tickets", fake.model_string())


def test_list_and_count_rules_filter_and_page_in_sql(ws: Workspace,
                                                     fake_openai: FakeOpenAI) -> None:
    _mixed_workspace(ws, fake_openai)
    # 9 examples: 3 technical (flagged restates_label and restates_task), 1 failed ("other"
    # #8), 5 clean ok.
    assert count_rules(ws, "tickets") == 9
    assert count_rules(ws, "tickets", status="failed") == 1
    assert count_rules(ws, "tickets", status="ok", flagged=False) == 5
    assert count_rules(ws, "tickets", flagged=True) == 3
    assert count_rules(ws, "tickets", flagged="restates_label") == 3
    assert count_rules(ws, "tickets", flagged="no_label") == 0
    assert count_rules(ws, "tickets", label="billing") == 3
    assert count_rules(ws, "tickets", search="PROBLEM OF THIS") == 5
    assert count_rules(ws, "tickets", search="100%") == 0
    assert count_rules(ws, "tickets", teacher="someone/else") == 0
    assert count_rules(ws, "other-task") == 0

    page1 = list_rules(ws, "tickets", limit=4)
    page2 = list_rules(ws, "tickets", limit=4, offset=4)
    page3 = list_rules(ws, "tickets", limit=4, offset=8)
    ids = [r["id"] for r in page1 + page2 + page3]
    assert len(page1) == 4 and len(page2) == 4 and len(page3) == 1
    assert len(set(ids)) == 9 and ids == sorted(ids)
    assert {r["ext_id"] for r in page1 + page2 + page3} == {f"t{i}" for i in range(9)}
    flagged = list_rules(ws, "tickets", flagged="restates_label", label="technical")
    assert len(flagged) == 3
    # A rule that is nothing but its label restates the label's name as well.
    assert all(r["flags"] == ["restates_label", "restates_task"] for r in flagged)
    assert sorted((r["ext_id"], r["example_text"]) for r in flagged) == [
        (f"t{i}", f"{TEXTS[i]} (#{i})") for i in (1, 4, 7)]
    [failed] = list_rules(ws, "tickets", status="failed")
    assert failed["raw"] == "broken" and failed["ext_id"] == "t8" and failed["split"] == "train"


def test_get_rule_joins_example_and_call(ws: Workspace, fake_openai: FakeOpenAI) -> None:
    make_task(ws, n=1)
    fake_openai.responder = good_reply
    extract(ws, "tickets", fake_openai.model_string())
    [row] = rows(ws)

    rule = get_rule(ws, row["id"])

    assert rule["rule"] == row["rule"] and rule["flags"] == []
    assert rule["example"]["text"].startswith(TEXTS[0]) and rule["example"]["meta"] == {}
    assert rule["call"]["id"] == row["call_id"]
    assert rule["call"]["messages"][0]["content"].endswith("Gold label: billing\n")
    assert rule["call"]["response"] == good_reply(fake_openai.requests[0])
    assert rule["call"]["params"]["json_schema"] == SCHEMA
    with pytest.raises(BadInput, match="rule 999"):
        get_rule(ws, 999)



def test_rules_are_listed_by_id_whatever_order_the_teacher_answered_in(
        ws: Workspace, fake_openai: FakeOpenAI) -> None:
    # Before: in example order, so a table led by the rule id read "5, 8, 4, 1…" after a
    # parallel extraction stored the answers as they came.
    make_task(ws, n=4)
    fake_openai.responder = good_reply
    extract(ws, "tickets", fake_openai.model_string())
    first = list_rules(ws, "tickets", limit=1)[0]
    with ws.write() as db:  # the first example's answer came last
        db.execute("UPDATE micro_instructions SET id = 100 WHERE id = ?", [first["id"]])
    listed = list_rules(ws, "tickets")
    assert [r["id"] for r in listed] == sorted(r["id"] for r in listed)
    assert listed[-1]["id"] == 100 and listed[-1]["ext_id"] == first["ext_id"]
