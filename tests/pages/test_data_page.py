"""The Data page: load the demo, upload a custom file, see sizes and label balance."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from streamlit.testing.v1 import AppTest

from pld.tasks.store import task_info
from tests.fakes.openai_server import FakeOpenAI
from tests.pages.conftest import Populated, connect, unescaped

GOOD_CSV = (b"message,category,ref\n" + b"".join(
    f"text number {i} about {'cards' if i % 2 else 'loans'},{'cards' if i % 2 else 'loans'},"
    f"r{i}\n".encode() for i in range(12)))


def _counts(path: Path) -> dict[str, int]:
    with connect(path) as ws:
        return {r["task"]: r["n"] for r in ws.query(
            "SELECT task, count(*) AS n FROM examples GROUP BY task")}


def _errors(at: AppTest) -> list[str]:
    """The error messages as a reviewer reads them (file contents in them are escaped)."""
    return [unescaped(e.value) for e in at.error]


def test_empty_workspace_invites_to_load(open_page: Callable[..., AppTest]) -> None:
    at = open_page("data").run()
    assert not at.exception
    assert any("No task is loaded" in i.value for i in at.info)
    assert "demo" in at.selectbox(key="data_task").options


def test_load_demo_creates_examples_and_selects_it(open_page: Callable[..., AppTest],
                                                   app_ws: Path) -> None:
    at = open_page("data").run()
    at.selectbox(key="data_task").set_value("demo").run()
    at.button(key="data_load").click().run()
    assert not at.exception and not _errors(at)
    assert _counts(app_ws) == {"demo": 100}
    assert at.session_state["task"] == "demo"
    assert any("Loaded demo" in s.value for s in at.success)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics == {"train examples": "50", "val examples": "20", "test examples": "30"}
    assert len(at.get("plotly_chart")) == 1
    preview = at.dataframe[-1].value
    assert len(preview) == 10 and set(preview.columns) == {"id", "label", "text"}


def test_changed_sizes_are_used(open_page: Callable[..., AppTest], app_ws: Path) -> None:
    at = open_page("data").run()
    at.selectbox(key="data_task").set_value("demo").run()
    at.number_input(key="data_n_demo_train").set_value(10).run()
    at.button(key="data_load").click().run()
    with connect(app_ws) as ws:
        n = ws.query("SELECT count(*) AS n FROM examples WHERE split = 'train'")[0]["n"]
    assert n == 10


def test_upload_with_column_mapping_loads_custom_task(open_page: Callable[..., AppTest],
                                                      app_ws: Path) -> None:
    at = open_page("data").run()
    at.file_uploader(key="data_upload").set_value(("Bank Mail.csv", GOOD_CSV, "text/csv")).run()
    assert not at.exception
    assert at.selectbox(key="data_text_col").options == ["message", "category", "ref"]
    assert at.dataframe[0].value.shape == (5, 3)  # the preview
    at.selectbox(key="data_text_col").set_value("message")
    at.selectbox(key="data_label_col").set_value("category")
    at.selectbox(key="data_id_col").set_value("ref")
    at.button(key="data_load_upload").click().run()
    assert not _errors(at), _errors(at)
    assert _counts(app_ws) == {"bank-mail": 12}
    assert at.session_state["task"] == "bank-mail"
    with connect(app_ws) as ws:
        assert {r["ext_id"] for r in ws.query("SELECT ext_id FROM examples")} == {
            f"r{i}" for i in range(12)}


def test_bad_upload_shows_specific_error_and_adds_nothing(open_page: Callable[..., AppTest],
                                                          populated_ws: Populated) -> None:
    before = _counts(populated_ws.path)
    bad = b"text,label\nfirst message,billing\nsecond message,billing\nthird one,biling\n"
    at = open_page("data", task="demo").run()
    at.file_uploader(key="data_upload").set_value(("alerts.csv", bad, "text/csv")).run()
    at.button(key="data_load_upload").click().run()
    assert not at.exception
    errors = _errors(at)
    assert len(errors) == 1
    assert errors[0].startswith(
        "alerts.csv line 4: field 'label': label 'biling' appears only once")
    assert "pld-upload" not in errors[0]  # the temporary folder is not shown
    assert _counts(populated_ws.path) == before


def test_unreadable_upload_is_reported_before_mapping(open_page: Callable[..., AppTest],
                                                      app_ws: Path) -> None:
    at = open_page("data").run()
    at.file_uploader(key="data_upload").set_value(("rows.jsonl", b'{"text": "a"}\n{oops\n',
                                                   "application/json")).run()
    assert _errors(at) == ["rows.jsonl line 2: malformed JSON (Expecting property name "
                           "enclosed in double quotes at column 2)"]
    assert "data_load_upload" not in [b.key for b in at.button]
    assert _counts(app_ws) == {}


def test_populated_workspace_shows_label_balance(open_page: Callable[..., AppTest],
                                                 populated_ws: Populated) -> None:
    at = open_page("data", task="demo").run()
    assert not at.exception
    assert at.subheader[0].value == "Task: demo"
    fig = at.get("plotly_chart")[0]
    assert fig is not None
    at.selectbox(key="data_preview_split").set_value("test").run()
    assert len(at.dataframe[-1].value) == 10


def test_a_second_upload_gets_its_own_defaults(open_page: Callable[..., AppTest],
                                               app_ws: Path) -> None:
    at = open_page("data").run()
    at.file_uploader(key="data_upload").set_value(("Bank Mail.csv", GOOD_CSV, "text/csv")).run()
    assert at.text_input(key="data_task_name").value == "bank-mail"
    at.selectbox(key="data_label_col").set_value("category").run()
    other = b"id,body,topic\n" + b"".join(
        f"x{i},note {i} on {'rates' if i % 2 else 'fees'},{'rates' if i % 2 else 'fees'}\n"
        .encode() for i in range(12))
    at.file_uploader(key="data_upload").set_value(("Branch Notes.csv", other, "text/csv")).run()
    assert not at.exception
    assert at.text_input(key="data_task_name").value == "branch-notes"
    assert at.selectbox(key="data_text_col").options == ["id", "body", "topic"]
    assert at.selectbox(key="data_id_col").value == "id"
    at.selectbox(key="data_text_col").set_value("body")
    at.selectbox(key="data_label_col").set_value("topic")
    at.button(key="data_load_upload").click().run()
    assert not _errors(at), _errors(at)
    assert _counts(app_ws) == {"branch-notes": 12}


def test_upload_keeps_description_and_shape_then_a_draft_is_kept(
        open_page: Callable[..., AppTest], app_ws: Path, fake_openai: FakeOpenAI) -> None:
    draft = "Each input is a bank message. cards: about cards; loans: about loans."
    fake_openai.responder = lambda body: json.dumps({"description": draft})
    at = open_page("data", reviewer="ana", teacher=fake_openai.model_string()).run()
    at.file_uploader(key="data_upload").set_value(("Bank Mail.csv", GOOD_CSV, "text/csv")).run()
    at.selectbox(key="data_text_col").set_value("message")
    at.selectbox(key="data_label_col").set_value("category")
    at.radio(key="data_shape").set_value("pair")
    at.button(key="data_load_upload").click().run()
    assert not _errors(at), _errors(at)
    with connect(app_ws) as ws:
        info = task_info(ws, "bank-mail")
    assert info.shape == "pair" and info.description.startswith("Custom task from")

    at.button(key="data_desc_draft").click().run()
    assert not at.exception and not _errors(at)
    assert at.text_area(key="data_desc_edit_bank-mail").value == draft
    with connect(app_ws) as ws:
        assert task_info(ws, "bank-mail").description != draft  # a draft keeps nothing
    at.text_area(key="data_desc_edit_bank-mail").set_value(draft + " Edited.")
    at.button(key="data_desc_keep").click().run()
    assert not _errors(at), _errors(at)
    with connect(app_ws) as ws:
        assert task_info(ws, "bank-mail").description == draft + " Edited."
        rows = ws.query("SELECT who, action FROM reviews WHERE entity = 'task' ORDER BY id")
    # The upload and the kept description, each with who did it.
    assert [(r["who"], r["action"]) for r in rows] == [("ana", "load"), ("ana", "describe")]
    assert draft + " Edited." in [t.value for t in at.text]
