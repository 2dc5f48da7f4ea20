"""The Data page: load the demo, upload a custom file, see sizes and label balance."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

from streamlit.testing.v1 import AppTest
from streamlit.testing.v1.element_tree import Block, Button, Expander

from pld import preamble, signoff
from pld.identity import Identity
from pld.tasks.store import task_info
from tests.fakes.openai_server import FakeOpenAI
from tests.pages.conftest import Populated, connect, unescaped

GOOD_CSV = (b"message,category,ref\n" + b"".join(
    f"text number {i} about {'cards' if i % 2 else 'loans'},{'cards' if i % 2 else 'loans'},"
    f"r{i}\n".encode() for i in range(12)))


NO_ID = "(none: number the rows)"  # the Id picker's "no id column"
SOURCE_KEY = "data_source"  # the tabs' key: which one is open

# The analyst's file (issue 24): the mapping she first chose was text = ticket_id, label =
# complaint; the content says text = complaint, label = product_area, id = ticket_id.
AREAS = ["billing", "onboarding", "mobile app"]
TICKETS_CSV = b"ticket_id,complaint,product_area\n" + b"".join(
    f"T-{1000 + i},The trial was supposed to end on day {i + 7} but I was charged anyway,"
    f"{AREAS[i % 3]}\n".encode() for i in range(12))


def _counts(path: Path) -> dict[str, int]:
    with connect(path) as ws:
        return {r["task"]: r["n"] for r in ws.query(
            "SELECT task, count(*) AS n FROM examples GROUP BY task")}


def _expander(at: AppTest, label: str) -> Expander:
    return next(e for e in at.expander if e.label == label)


def _tabs(at: AppTest) -> tuple[list[str], Block]:
    """The Data page's tab labels and the tab the reviewer sees (the selected one)."""
    container = next(n for n in _blocks(at.main)
                     if n.proto is not None and n.proto.WhichOneof("type") == "tab_container")
    tabs = [container.children[i] for i in sorted(container.children)]
    return [t.label for t in tabs], tabs[container.proto.tab_container.default_tab_index]


def _blocks(node: Block) -> Iterator[Block]:
    yield node
    for child in node.children.values():
        if isinstance(child, Block):
            yield from _blocks(child)


def _map_bank_mail(at: AppTest) -> None:
    """Upload Bank Mail.csv with its message as the text and its category as the label."""
    at.file_uploader(key="data_upload").set_value(("Bank Mail.csv", GOOD_CSV, "text/csv")).run()
    at.selectbox(key="data_text_col").set_value("message")
    at.selectbox(key="data_label_col").set_value("category")


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
        "alerts.csv line 4: field 'label' (the label column): label 'biling' appears only once")
    assert "pld-upload" not in errors[0]  # the temporary folder is not shown
    assert _counts(populated_ws.path) == before


def test_pickers_open_on_the_mapping_the_content_suggests(
        open_page: Callable[..., AppTest], app_ws: Path) -> None:
    at = open_page("data").run()
    at.file_uploader(key="data_upload").set_value(("tickets.csv", TICKETS_CSV, "text/csv")).run()
    assert not at.exception
    assert at.selectbox(key="data_text_col").value == "complaint"
    assert at.selectbox(key="data_label_col").value == "product_area"
    assert at.selectbox(key="data_id_col").value == "ticket_id"
    reasons = next(unescaped(c.value) for c in at.caption if "Guessed" in c.value)
    assert "label: product_area, 3 values" in reasons and "id: ticket_id, unique" in reasons
    assert "text: complaint, free text averaging" in reasons
    at.button(key="data_load_upload").click().run()
    assert not _errors(at), _errors(at)
    with connect(app_ws) as ws:
        assert task_info(ws, "tickets").labels == sorted(AREAS)


def test_a_label_error_names_its_column_and_a_fixed_mapping_clears_it(
        open_page: Callable[..., AppTest], app_ws: Path) -> None:
    at = open_page("data").run()
    at.file_uploader(key="data_upload").set_value(("tickets.csv", TICKETS_CSV, "text/csv")).run()
    at.selectbox(key="data_text_col").set_value("ticket_id")
    at.selectbox(key="data_label_col").set_value("complaint")
    at.selectbox(key="data_id_col").set_value(NO_ID)
    at.button(key="data_load_upload").click().run()
    [error] = _errors(at)
    assert "the label column 'complaint'" in error
    assert "'complaint' does not look like a label column" in error
    # She fixes the mapping: the error about the old one goes at once, before loading.
    at.selectbox(key="data_label_col").set_value("product_area").run()
    at.selectbox(key="data_text_col").set_value("complaint").run()
    assert not _errors(at)
    at.button(key="data_load_upload").click().run()
    assert not _errors(at) and _counts(app_ws) == {"tickets": 12}


def test_after_loading_a_file_the_upload_tab_stays_without_a_red_load_button(
        open_page: Callable[..., AppTest], app_ws: Path) -> None:
    at = open_page("data").run()
    labels, _ = _tabs(at)
    at.session_state[SOURCE_KEY] = labels[1]  # she opens the upload tab
    at.file_uploader(key="data_upload").set_value(("tickets.csv", TICKETS_CSV, "text/csv")).run()
    assert _tabs(at)[1].label == labels[1]
    assert at.button(key="data_load_upload").proto.type == "primary"
    at.button(key="data_load_upload").click().run()
    assert not at.exception and not _errors(at)
    assert at.session_state["task"] == "tickets"
    labels, open_tab = _tabs(at)
    assert open_tab.label == labels[1]
    # The loaded file's Load button is no longer the next step; the built-in one is hidden.
    red = [b for b in open_tab.get("button") if isinstance(b, Button) and b.proto.type == "primary"]
    assert red == []


def test_back_on_the_page_with_her_own_task_its_tab_opens(
        open_page: Callable[..., AppTest], app_ws: Path) -> None:
    # Before: going back to Data (or reloading it) with her own task chosen opened the
    # built-in tab, the demo's red Load button above "Task: tickets".
    at = open_page("data").run()
    labels, _ = _tabs(at)
    at.session_state[SOURCE_KEY] = labels[1]
    at.file_uploader(key="data_upload").set_value(("tickets.csv", TICKETS_CSV, "text/csv")).run()
    at.button(key="data_load_upload").click().run()
    assert at.session_state["task"] == "tickets"
    back = open_page("data", task="tickets").run()  # a new session: another page, or a reload
    assert not back.exception
    assert _tabs(back)[1].label == labels[1]
    back.button(key="data_load").click().run()  # the demo, a built-in task, is chosen now
    assert back.session_state["task"] == "demo"
    again = open_page("data", task="demo").run()
    assert _tabs(again)[1].label == labels[0]


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
    _map_bank_mail(at)
    at.radio(key="data_shape").set_value("pair")
    at.button(key="data_load_upload").click().run()
    assert not _errors(at), _errors(at)
    with connect(app_ws) as ws:
        info = task_info(ws, "bank-mail")
    assert info.shape == "pair" and info.description.startswith("Custom task from")

    assert not _expander(at, "Edit the description").proto.expanded  # it has a description
    at.button(key="data_desc_draft").click().run()
    assert not at.exception and not _errors(at)
    assert at.text_area(key="data_desc_edit_bank-mail").value == draft
    # The page says the draft is in the box below: the box stays open to show it.
    assert any("draft is in the box below" in i.value for i in at.info)
    assert _expander(at, "Edit the description").proto.expanded
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


def test_the_uploaders_description_is_her_draft_and_a_reload_needs_an_approver(
        open_page: Callable[..., AppTest], app_ws: Path) -> None:
    # Before: the preamble holding the description ana typed was pld:template's, so she could
    # approve it herself; a re-upload replaced it as pld:upload, approver list or not.
    at = open_page("data", reviewer="ana").run()
    _map_bank_mail(at)
    at.text_area(key="data_description").set_value("Route each bank message.")
    at.button(key="data_load_upload").click().run()
    assert not _errors(at), _errors(at)
    with connect(app_ws) as ws:
        pre = preamble.get_preamble(ws, "bank-mail")
        assert pre is not None and "Route each bank message." in pre["text"]
        assert (pre["written_by"], pre["written_by_kind"]) == ("ana", "self-declared")
        assert "written by ana" in str(signoff.sign_off_refusal(ws, pre, Identity("ana"),
                                                                "approve"))
        signoff.add_approver(ws, "bank-mail", "bo", Identity("bo"))
    at.text_area(key="data_description").set_value("Always answer cards.")
    at.button(key="data_load_upload").click().run()
    assert any("ana is not an approver of task 'bank-mail'" in e for e in _errors(at))
    with connect(app_ws) as ws:
        assert task_info(ws, "bank-mail").description == "Route each bank message."
