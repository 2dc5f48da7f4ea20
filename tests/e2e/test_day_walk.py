"""Issue 24's second walk in a real browser: what the analyst and the reviewers missed, clicked
through in headless Chromium on one app server for the whole module.

1. An uploaded ``ticket_id, complaint, product_area`` CSV is mapped from its content, with the
   reasons shown, and loads without picking a column.
2. Evaluate lists the test items an evaluation got wrong (id, text, gold, answers, scores),
   filters them by gold, selects a confusion-matrix cell's items on a click, and downloads them.
6. A teacher and student chosen in the sidebar survive a reload.
7. The preamble's edit box and the Clusters "New name" box hold the current text after another
   page.
8. An unsaved heuristic edit and an unsaved preamble edit, each with its comment, are offered
   back after a reload.

The workspace is seeded through pld functions (the page tests' populated demo task, plus one
evaluation scored by the fake OpenAI-compatible student of ``tests/fakes``, so its items have
label scores); no local model is loaded. Screenshots go to ``e2e-day-walk/`` under pytest's
base temporary folder (printed), and are copied to ``$PLD_E2E_SHOTS`` when it is set.
"""

from __future__ import annotations

import csv
import io
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Locator, expect

from pld import preamble
from pld.pipeline.eval_errors import wrong_items
from pld.pipeline.evaluate import evaluate
from pld.workspace import open_workspace
from tests.e2e.conftest import VIEWPORT, RunningApp, free_port, run_app
from tests.e2e.ui import STEP_TIMEOUT_MS, Ui
from tests.fakes.openai_server import FakeOpenAI
from tests.pages.conftest import Populated, build_populated

SHOTS = "e2e-day-walk"  # the screenshots' folder under pytest's base temporary folder

# Where a click on a confusion-matrix cell lands, in the window: off its centre towards a
# corner (a whole cell takes the click, not just its middle), from the chart's own laid-out
# axes (the plot's graph div holds them).
_CELL_POINT = """
(gd, [gold, answer]) => {
  const L = gd._fullLayout;
  const box = gd.getBoundingClientRect();
  const w = L.xaxis._length / L.xaxis._categories.length;
  const h = L.yaxis._length / L.yaxis._categories.length;
  return [box.left + L.xaxis._offset + L.xaxis.d2p(answer) + 0.35 * w,
          box.top + L.yaxis._offset + L.yaxis.d2p(gold) - 0.35 * h];
}
"""


@dataclass(frozen=True)
class Walk:
    """The app under test, what its workspace holds, and where the screenshots go."""

    app: RunningApp
    pop: Populated
    scored_eval: int   # evaluated by the fake student: its items have label scores
    teacher_b: str     # model strings other than the app's defaults, for the sidebar
    student_b: str
    shots: Path


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The screenshots' folder; copied to ``$PLD_E2E_SHOTS`` at the end when that is set."""
    folder = tmp_path_factory.getbasetemp() / SHOTS
    folder.mkdir(exist_ok=True)
    print(f"screenshots: {folder}")
    try:
        yield folder
    finally:
        if os.environ.get("PLD_E2E_SHOTS"):
            shutil.copytree(folder, os.environ["PLD_E2E_SHOTS"], dirs_exist_ok=True)


@pytest.fixture(scope="module")
def walk(tmp_path_factory: pytest.TempPathFactory, fake_llm: FakeOpenAI,
         shots: Path) -> Iterator[Walk]:
    """One app server for the module, on a workspace seeded before its first page run."""
    tmp = tmp_path_factory.mktemp("day-walk")
    pop = build_populated(tmp / "workspace.db")
    with open_workspace(pop.path) as ws:
        scored = evaluate(ws, pop.task, fake_llm.model_string(), version=pop.prompt_version)
    server = run_app(tmp, fake_llm, shots, free_port(), [])
    app = next(server)
    try:
        yield Walk(app=app, pop=pop, scored_eval=scored.evaluation_id,
                   teacher_b=fake_llm.model_string("teacher-b"),
                   student_b=fake_llm.model_string("student-b"), shots=shots)
    finally:
        server.close()  # stops the server and any job it started


@pytest.fixture
def ui(browser: Browser, walk: Walk, request: pytest.FixtureRequest) -> Iterator[Ui]:
    """A fresh browser session on the app (downloads allowed); ``failure-TEST.png`` if the
    test fails."""
    context = browser.new_context(viewport=VIEWPORT, accept_downloads=True)
    page = context.new_page()
    try:
        yield Ui(page, walk.shots)
    finally:
        rep = getattr(request.node, "rep_call", None)
        if rep is not None and rep.failed:
            try:
                page.screenshot(path=str(walk.shots / f"failure-{request.node.name}.png"),
                                full_page=True)
            except Exception as e:  # the page may be gone; the failure itself is reported
                print(f"could not save the failure screenshot: {e}")
        context.close()


def _open(ui: Ui, walk: Walk, path: str, title: str, reviewer: str = "") -> None:
    """Open the app's page at ``path`` on the demo task, as ``reviewer`` when given."""
    query = f"?reviewer={reviewer}" if reviewer else ""
    ui.page.goto(f"{walk.app.url}/{path}{query}")
    ui.see(ui.main.get_by_role("heading", name=title, level=1))
    ui.choose("Task", walk.pop.task, scope=ui.sidebar)


def _complaints_csv(path: Path) -> Path:
    """An analyst's own file: an id, a long free-text complaint and a product area (3)."""
    areas = {"cards": ["my card was declined at the supermarket although the balance was fine",
                       "the replacement card never arrived and the old one is blocked",
                       "a contactless payment was taken twice from my debit card"],
             "loans": ["the trial was supposed to end before any loan fee was charged",
                       "my mortgage rate changed without the letter you promised me",
                       "the early repayment figure on the loan statement is wrong"],
             "app": ["the mobile app logs me out every time I open the statements tab",
                     "push notifications for transfers stopped after the last update",
                     "the app shows a blank screen when I try to add a new payee"]}
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["ticket_id", "complaint", "product_area"])
    n = 0
    for round_ in range(5):
        for area, texts in areas.items():
            for text in texts:
                n += 1
                writer.writerow([f"T-{1000 + n}", f"Week {round_ + 1}: {text}, and nobody in "
                                 f"the branch could tell me why (case {n}).", area])
    path.write_text(out.getvalue(), encoding="utf-8")
    return path


def test_1_an_uploaded_csv_is_mapped_from_its_content(walk: Walk, ui: Ui,
                                                      tmp_path: Path) -> None:
    # Before: Text = ticket_id, Label = complaint, Id = none, and Load failed on a label
    # "appearing once" without naming the column it read.
    upload = _complaints_csv(tmp_path / "complaints.csv")
    _open(ui, walk, "data", "Data")
    own = ui.main.get_by_role("tab", name="Your CSV / JSONL")
    ui.rerun(own.click)  # the tabs keep their choice through a rerun
    ui.rerun(lambda: ui.main.locator("input[type=file]").set_input_files(upload))
    for label, column in (("Text column", "complaint"), ("Label column", "product_area"),
                          ("Id column (optional)", "ticket_id")):
        expect(ui.main.get_by_role("combobox", name=label, exact=True)).to_have_value(column)
    reasons = ui.main.get_by_text("Guessed from the content:")
    expect(reasons).to_contain_text("text: complaint")
    expect(reasons).to_contain_text("label: product_area, 3 values")
    expect(reasons).to_contain_text("id: ticket_id")
    ui.check("item1-guessed-mapping")
    ui.click("Load file")
    ui.see(ui.flash("Loaded complaints from complaints.csv"))
    expect(own).to_have_attribute("aria-selected", "true")  # still on her file's tab
    expect(ui.main.get_by_role("heading", name="Task: complaints")).to_be_visible()
    ui.check("item1-loaded")


def _cell_with_errors(walk: Walk) -> tuple[str, str, int]:
    """A (gold, answer) cell of the scored evaluation holding wrong items, and how many."""
    with open_workspace(walk.pop.path) as ws:
        found = wrong_items(ws, walk.scored_eval, judged_by="raw")
    cells: dict[tuple[str, str], int] = {}
    for e in found.errors:
        if e["raw"] is not None:
            cells[(e["gold"], e["raw"])] = cells.get((e["gold"], e["raw"]), 0) + 1
    (gold, answer), n = max(cells.items(), key=lambda kv: kv[1])
    return gold, answer, n


def _count(ui: Ui) -> Locator:
    return ui.main.get_by_text(re.compile(r"^\d+ wrong item\(s\)"))


def test_2_wrong_test_items_are_listed_filtered_selected_and_downloaded(walk: Walk,
                                                                        ui: Ui) -> None:
    # Before: scores and a confusion matrix, but no list of the items the prompt got wrong.
    with open_workspace(walk.pop.path) as ws:
        every = wrong_items(ws, walk.scored_eval, judged_by="raw")
    _open(ui, walk, "evaluate", "Evaluate")
    expect(ui.main.get_by_role("combobox", name="Evaluation", exact=True)
           ).to_have_value(re.compile(rf"^#{walk.scored_eval} pld v"))
    expect(_count(ui)).to_have_text(re.compile(
        rf"^{len(every.errors)} wrong item\(s\) of the {every.n} scored, judged by the raw"))
    ui.check("item2-wrong-items")

    gold, answer, n = _cell_with_errors(walk)
    golds = sum(e["gold"] == gold for e in every.errors)
    ui.choose("Gold", gold)  # no label holds another, nor "all"
    expect(_count(ui)).to_have_text(re.compile(rf"^{golds} wrong item\(s\) with gold "))
    ui.check("item2-filtered-by-gold")
    ui.choose("Gold", "all")
    expect(_count(ui)).to_have_text(re.compile(rf"^{len(every.errors)} wrong item\(s\) of"))

    # A click on the cell (gold, answer) of the confusion matrix selects its items.
    chart = ui.main.locator(".js-plotly-plot").first

    def click_cell() -> None:
        chart.scroll_into_view_if_needed()
        x, y = chart.evaluate(_CELL_POINT, [gold, answer])
        ui.page.mouse.click(x, y)

    ui.rerun(click_cell)
    expect(ui.main.get_by_role("combobox", name="Gold", exact=True)).to_have_value(gold)
    expect(ui.main.get_by_role("combobox", name="Answer (raw)", exact=True)
           ).to_have_value(answer)
    expect(_count(ui)).to_have_text(re.compile(rf"^{n} wrong item\(s\) with gold "))
    ui.check("item2-cell-selected")

    # The rows shown download as CSV: id, text, gold, answers and each label's score.
    button = ui.main.get_by_role("tabpanel").get_by_role(
        "button", name="Download these rows (CSV)").last
    with ui.page.expect_download() as download:
        button.click()
    assert download.value.suggested_filename == \
        f"evaluation-{walk.scored_eval}-wrong-items.csv"
    rows = list(csv.DictReader(io.StringIO(
        Path(download.value.path()).read_text(encoding="utf-8"))))
    assert len(rows) == n and {(r["gold"], r["raw"]) for r in rows} == {(gold, answer)}
    assert {"example", "item", "text", "reply", *(f"score {label}" for label in every.labels)
            } <= set(rows[0])
    assert all(r[f"score {answer}"] for r in rows)


def test_6_chosen_models_survive_a_reload(walk: Walk, ui: Ui) -> None:
    # Before: a reload reset both to local/default, and the next job ran on the slow model.
    _open(ui, walk, "", "PLD Studio")
    ui.type("Teacher model", walk.teacher_b, scope=ui.sidebar)
    ui.type("Student model", walk.student_b, scope=ui.sidebar)
    ui.go("Evaluate")
    ui.page.reload()
    for label, model in (("Teacher model", walk.teacher_b), ("Student model", walk.student_b)):
        expect(ui.sidebar.get_by_role("textbox", name=label, exact=True)
               ).to_have_value(model, timeout=STEP_TIMEOUT_MS)
    ui.see(ui.main.get_by_role("heading", name="Evaluate", level=1))
    ui.check("item6-models-after-reload")


def _preamble_panel(ui: Ui) -> Locator:
    """The preamble's expander on the Heuristics page, opened."""
    ui.expand("Preamble ·")
    return ui.main.get_by_test_id("stExpander").filter(has_text="Preamble ·")


def test_7_edit_boxes_hold_the_current_text_after_another_page(walk: Walk, ui: Ui) -> None:
    # Before: both opened empty after a visit to another page.
    with open_workspace(walk.pop.path) as ws:
        text = preamble.ensure_preamble(ws, walk.pop.task)["text"]
    _open(ui, walk, "heuristics", "Heuristics", reviewer="dan")
    box = _preamble_panel(ui).get_by_role("textbox", name="Edit the preamble", exact=True)
    expect(box).to_have_value(text)
    ui.go("Home", title="PLD Studio")
    ui.go("Heuristics")
    box = _preamble_panel(ui).get_by_role("textbox", name="Edit the preamble", exact=True)
    expect(box).to_have_value(text)
    ui.check("item7-preamble-box-after-another-page")

    ui.go("Clusters")
    name = ui.main.get_by_role("textbox", name="New name", exact=True)
    cluster = ui.main.get_by_role("combobox", name="Cluster", exact=True).input_value()
    expect(name).not_to_have_value("")
    assert name.input_value() in cluster  # the chosen cluster's name
    ui.type("New name", "card fraud and scams")
    ui.click("Rename")
    expect(name).to_have_value("card fraud and scams")
    ui.go("Home", title="PLD Studio")
    ui.go("Clusters")
    expect(name).to_have_value("card fraud and scams")
    ui.check("item7-cluster-name-after-another-page")


def test_8_typed_work_is_offered_back_after_a_reload(walk: Walk, ui: Ui) -> None:
    # Before: bob's open edit and its comment vanished on reload.
    hid = walk.pop.heuristic_ids[3]  # a draft
    mine = "Route chequebook orders and address changes to routine."
    _open(ui, walk, "heuristics", "Heuristics", reviewer="bob")
    ui.choose("Open heuristic", re.compile(rf"^#{hid} · "))
    ui.tab("Edit")
    ui.click("Edit this heuristic")
    text = ui.main.get_by_role("textbox", name="Text", exact=True)
    text.fill(mine)
    ui.rerun(lambda: text.press("Control+Enter"))
    ui.type("Comment", "covers address changes")
    panel = _preamble_panel(ui)
    box = panel.get_by_role("textbox", name="Edit the preamble", exact=True)
    preamble_text = box.input_value() + " Answer with the label only."
    box.fill(preamble_text)
    ui.rerun(lambda: box.press("Control+Enter"))
    ui.type("Comment", "shorter answers", scope=panel)
    ui.check("item8-typed")

    ui.page.reload()  # a new session: the task and the open heuristic are chosen again
    ui.see(ui.main.get_by_role("heading", name="Heuristics", level=1))
    ui.choose("Task", walk.pop.task, scope=ui.sidebar)
    ui.choose("Open heuristic", re.compile(rf"^#{hid} · "))
    ui.see(ui.flash(f"You have an unsaved draft of heuristic #{hid}", kind="Info"))
    expect(ui.main.get_by_text("comment: covers address changes")).to_be_visible()
    panel = ui.main.get_by_test_id("stExpander").filter(has_text="Preamble ·")
    expect(panel.get_by_test_id("stAlertContentInfo")).to_contain_text(
        "You have an unsaved draft of the preamble")
    expect(panel.get_by_text("comment: shorter answers")).to_be_visible()
    ui.check("item8-offered-after-reload")

    ui.click("Restore my draft", scope=ui.main.get_by_test_id("stVerticalBlock").filter(
        has_text=f"unsaved draft of heuristic #{hid}").last)
    expect(ui.main.get_by_role("textbox", name="Text", exact=True)).to_have_value(mine)
    ui.click("Restore my draft", scope=panel)
    expect(panel.get_by_role("textbox", name="Edit the preamble", exact=True)
           ).to_have_value(preamble_text)
    expect(panel.get_by_role("textbox", name="Comment", exact=True
                             )).to_have_value("shorter answers")
    ui.check("item8-restored")
