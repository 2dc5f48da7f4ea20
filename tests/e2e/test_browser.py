"""The review app in a real browser: headless Chromium drives `streamlit run app.py` like a user.

One walk through the method on the demo task, by clicking and typing only: load the demo task,
extract micro-instructions (as one batch through the provider's batch API), cluster them
(k-means, k=4) and accept the clustering, consolidate, edit a heuristic as bob (whose own
approval the four-eyes rule refuses), approve it and the others as alice, build a prompt
version, evaluate it and the zero-shot baseline, export it to a folder and download it. Teacher
and student are the fake OpenAI-compatible server of ``tests/fakes`` with the chain test's
scripted answers, not the local LLM, so the walk is fast and its outcome fixed; the background
jobs the pages start (``python -m pld ...``) reach it over 127.0.0.1. Each step saves a
screenshot under ``test-artifacts/e2e/`` and fails on any Streamlit exception box or any error
box it did not expect.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from playwright.sync_api import Locator, Page, expect
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from pld import review, review_rows
from pld.identity import Identity
from pld.pipeline.verify import verify
from pld.workspace import open_workspace
from tests.e2e.conftest import RunningApp
from tests.e2e.ui import RETYPE_TIMEOUT_MS, STEP_TIMEOUT_MS, Ui
from tests.fakes.openai_server import FakeOpenAIBatches

JOB_TIMEOUT_MS = 180_000    # a background job (clustering loads the embedding model first)


def _open_heuristic(ui: Ui) -> int:
    """The id of the heuristic shown in detail (from its heading, redrawn on every run)."""
    heading = ui.main.get_by_role("heading", name=re.compile(r"^Heuristic #\d+$"))
    return int(re.sub(r"\D", "", heading.inner_text()))


def _pick(ui: Ui, box: Locator, hid: int) -> None:
    """Open heuristic ``hid`` from the open list of ``box``. Under load a rerun already under
    way can redraw the list as the option is clicked, and the click is lost (no run follows):
    open the list and click again, twice at most."""
    heading = ui.main.get_by_role("heading", name=f"Heuristic #{hid}")
    for attempt in range(3):
        option = ui.page.get_by_role("option").filter(has_text=re.compile(rf"^#{hid} · ")).first
        try:
            if not option.is_visible():
                box.click()
            ui.rerun(option.click, timeout_ms=RETYPE_TIMEOUT_MS)
            break
        except PlaywrightTimeoutError:
            if heading.is_visible() or attempt == 2:
                break
    expect(heading).to_be_visible()


def _approve_drafts(ui: Ui) -> int:
    """As the current reviewer, approve every draft heuristic one by one; return how many.

    Drafts are found in the open list of the "Open heuristic" box; after each approval the
    box's own text must say "approved" at once (Streamlit keeps a keyed select box's old label
    when its format_func output changes, unless the page sends the choice again).
    """
    approved = 0
    box = ui.main.get_by_role("combobox", name="Open heuristic", exact=True)
    while True:
        current = _open_heuristic(ui)  # read before the list opens: it hides the page from roles
        options = ui.open_list(box)
        drafts = [int(m[1]) for t in options.all_inner_texts()
                  if (m := re.match(r"#(\d+) · draft · ", t))]
        if not drafts or current in drafts:
            ui.page.keyboard.press("Escape")
            expect(options.first).to_be_hidden()
        else:
            _pick(ui, box, drafts[0])
        if not drafts:
            return approved
        ui.tab("Review")
        ui.click("Approve")
        expect(ui.flash(re.compile(r"Heuristic #\d+ approved by alice"))).to_be_visible()
        expect(box).to_have_value(re.compile(rf"^#{_open_heuristic(ui)} · approved · "))
        approved += 1


def test_review_app_end_to_end(streamlit_app: RunningApp, browser_page: Page, artifacts: Path,
                               tmp_path: Path, fake_llm: FakeOpenAIBatches) -> None:
    page = browser_page
    ui = Ui(page, artifacts)

    # Home: nothing loaded yet; the models are the fake's.
    page.goto(streamlit_app.url)
    ui.see(ui.main.get_by_role("heading", name="PLD Studio", level=1))
    expect(ui.main.get_by_text(streamlit_app.model).first).to_be_visible()
    ui.check("home")

    # Data: load the demo task.
    ui.go("Data")
    ui.choose("Task", "demo")
    ui.see(ui.main.get_by_text("in-house demo data", exact=False).first)
    ui.click("Load")
    ui.see(ui.flash("Loaded demo:"))
    expect(ui.main.get_by_role("heading", name="Task: demo")).to_be_visible()
    expect(ui.metric("train examples")).to_have_text("50")
    expect(ui.sidebar.get_by_role("combobox", name="Task", exact=True)).to_have_value("demo")
    ui.check("data")

    # Micro-instructions: extract a rule from each of the 50 training examples, as one batch
    # through the (fake) provider's Batch API.
    ui.go("Micro-instructions")
    ui.tick("Use the provider's batch API (half price, answers within 24 h)")
    ui.click("Start extraction")
    ui.see(ui.flash("Extraction started in the background"))
    ui.see(ui.main.get_by_text("Rules 1–50 of 50 matching"), timeout_ms=JOB_TIMEOUT_MS)
    expect(ui.metric("Failed")).to_have_text("0")
    assert fake_llm.book.creates == 1 and len(set(fake_llm.book.submitted)) == 50
    with open_workspace(streamlit_app.workspace) as ws:
        assert [(b["n_requests"], b["succeeded"], b["status"])
                for b in ws.query("SELECT * FROM batches")] == [(50, 50, "landed")]
    expect(ui.main.get_by_text("Micro-instruction", exact=True)).to_be_visible()
    ui.check("extract")

    # Clusters: k-means with k=4, then accept it as bob.
    ui.go("Clusters")
    ui.choose("Method", "kmeans")
    ui.type("k (clusters)", "4", role="spinbutton")
    ui.click("Start clustering")
    ui.see(ui.flash("Clustering started in the background"))
    accept = ui.button("Accept this clustering")
    ui.see(accept, timeout_ms=JOB_TIMEOUT_MS)
    expect(ui.metric("Clusters").first).to_have_text("4")
    ui.type("Reviewer name", "bob", scope=ui.sidebar)
    ui.click("Accept this clustering")
    ui.see(ui.main.get_by_text(re.compile(r"Accepted by bob at")).first)
    ui.check("clusters")

    # Heuristics: consolidate the four clusters into four drafts.
    ui.go("Heuristics")
    ui.click("Consolidate")
    ui.see(ui.main.get_by_role("combobox", name="Open heuristic", exact=True),
           timeout_ms=JOB_TIMEOUT_MS)
    expect(ui.metric("Draft")).to_have_text("4")
    ui.check("heuristics-drafts")

    # bob edits the open heuristic; the four-eyes rule refuses his own approval.
    hid = _open_heuristic(ui)
    ui.tab("Edit")
    ui.click("Edit this heuristic")
    text = ui.main.get_by_role("textbox", name="Text", exact=True)
    edited = (text.input_value().strip() + " A caller who asks for a one-time passcode is "
              "escalate-fraud even when the customer sounds calm.")
    text.fill(edited)
    ui.rerun(lambda: text.press("Control+Enter"))
    # The heuristic's own comment box: the preamble panel, open beside it, has one too.
    editor = ui.main.get_by_test_id("stVerticalBlock").filter(
        has=ui.page.get_by_role("textbox", name="Text", exact=True)).filter(
        has_not=ui.page.get_by_role("textbox", name="Edit the preamble", exact=True)).last
    ui.type("Comment", "Added the passcode case.", scope=editor)
    ui.click("Save")
    ui.see(ui.flash(f"Saved heuristic #{hid} as version 2"))
    ui.tab("Review")
    ui.see(ui.main.get_by_text("You (bob) wrote the current text"))
    # Approve is off before anyone clicks it, not refused after.
    expect(ui.button("Approve")).to_be_disabled()
    ui.check("heuristics-four-eyes")

    # alice's queue on the Home page lists bob's edit; one click opens it where it is signed,
    # and a reload keeps who she is.
    ui.type("Reviewer name", "alice", scope=ui.sidebar)
    ui.go("Home", title="PLD Studio")
    ui.see(ui.main.get_by_text(re.compile(rf"heuristic #{hid} v2 by bob")))
    ui.check("home-queue")
    ui.click(f"Open heuristic #{hid}")
    ui.see(ui.main.get_by_role("heading", name=f"Heuristic #{hid}"))
    assert "reviewer=alice" in page.url, page.url
    page.reload()  # a new session: only the address can remember who she is
    expect(ui.sidebar.get_by_role("textbox", name="Reviewer name", exact=True)
           ).to_have_value("alice", timeout=STEP_TIMEOUT_MS)
    ui.settle()
    ui.choose("Open heuristic", re.compile(rf"^#{hid} · "))

    # alice approves bob's edit and the three teacher drafts.
    expect(ui.main.get_by_text("Signing as alice (self-declared).")).to_be_visible()
    assert _approve_drafts(ui) == 4
    # The prompt's fixed text (description, labels, output instruction) is signed off too.
    ui.click("Approve preamble")
    ui.see(ui.flash("Preamble approved by alice"))
    ui.go("Home", title="PLD Studio")
    ui.see(ui.flash("Nothing waits for alice."))
    ui.go("Heuristics")
    expect(ui.metric("Approved")).to_have_text("4")
    expect(ui.metric("Draft")).to_have_text("0")
    ui.choose("Open heuristic", re.compile(rf"^#{hid} · "))
    expect(ui.main.get_by_role("heading", name=f"Heuristic #{hid}")).to_be_visible()
    expect(ui.main.get_by_text(re.compile(r"approved · version 3 .*approved by alice"))
           ).to_be_visible()
    ui.tab(re.compile(r"^History"))
    history = ui.main.get_by_role("tabpanel").filter(has_text="edit by bob")
    expect(history).to_contain_text("approve by alice")
    expect(history).to_contain_text("Added the passcode case.")
    ui.check("heuristics-approved")

    # Export: build prompt version 1 from the four approved heuristics.
    ui.go("Export")
    ui.expand("Build a prompt version from the approved heuristics")
    ui.click("Build prompt version")
    ui.see(ui.flash("Prompt v1 holds 4 approved heuristics."))
    expect(ui.main.get_by_role("combobox", name="Prompt version", exact=True)
           ).to_have_value("v1 (exportable)")
    expect(ui.main.get_by_text("passcode").first).to_be_visible()
    ui.check("export-built")

    # Evaluate: prompt v1, then the zero-shot baseline on the same items.
    ui.go("Evaluate")
    ui.click("Run evaluation")
    ui.see(ui.flash("Evaluation started in the background"))
    ui.see(ui.main.get_by_role("combobox", name="Evaluation", exact=True),
           timeout_ms=JOB_TIMEOUT_MS)
    expect(ui.metric("Macro-F1 (raw)").first).to_have_text(re.compile(r"^[01]\.\d{3}$"))
    expect(ui.metric("Macro-F1 (calibrated)").first).to_have_text(re.compile(r"^[01]\.\d{3}$"))
    ui.check("evaluate-v1")
    ui.expand("Run an evaluation")
    ui.rerun(lambda: ui.main.get_by_text("Zero-shot baseline", exact=True).click())
    ui.click("Run evaluation")
    ui.see(ui.flash("--zero-shot"))
    # The Compare tab is drawn (hidden) once two evaluations exist; the page's rerun at the end
    # of the job shows the first tab again, so open it after that.
    delta = ui.main.get_by_text(re.compile(r"B − A: macro-F1"))
    expect(delta).to_be_attached(timeout=JOB_TIMEOUT_MS)
    ui.settle()
    ui.tab("Compare two")
    ui.see(delta)
    # ``has_text``, not ``has=delta``: a ``has`` locator is resolved inside the outer one, and
    # ``delta`` starts from the page's main block, which no tab panel contains.
    compare = ui.main.get_by_role("tabpanel").filter(has_text=re.compile(r"B − A: macro-F1"))
    expect(compare).to_contain_text("zero-shot")
    expect(compare).to_contain_text("paired bootstrap")
    ui.check("evaluate-compare")

    # Conflicts: one iteration of the loop on validation; the page says in words why it
    # stopped and shows the exact prompt the student ran with.
    ui.go("Conflicts")
    ui.click("Run conflict loop")
    ui.see(ui.flash("Conflict loop started in the background"))
    ui.see(ui.main.get_by_text(re.compile(r"After iteration \d+ the loop stopped because")),
           timeout_ms=JOB_TIMEOUT_MS)
    ui.expand("The prompt the student ran with in iteration")
    expect(ui.main.get_by_text("passcode").first).to_be_visible()
    ui.check("conflicts")

    # Export: write prompt.md and manifest.json to a folder, and download prompt.md.
    ui.go("Export")
    out = tmp_path / "exported"
    ui.type("Or write both files to this folder", str(out))
    ui.click("Write files")
    ui.see(ui.flash("Wrote "))
    prompt, manifest_file = out / "prompt.md", out / "manifest.json"
    assert prompt.is_file() and manifest_file.is_file()
    manifest = json.loads(manifest_file.read_text(encoding="utf-8"))
    assert len(manifest["heuristics"]) == 4
    assert manifest["preamble"]["approved_by"] == "alice"
    assert manifest["prompt_built_by"] == "alice"
    assert {e["method"] for e in manifest["evaluations"]} >= {"pld"}
    assert "passcode" in prompt.read_text(encoding="utf-8")
    with page.expect_download() as download:
        ui.button("Download prompt.md").click()
    assert Path(download.value.path()).read_bytes() == prompt.read_bytes()
    # A downloaded pair is recorded in the trail like a written one: verify accepts it.
    saved = tmp_path / "downloaded"
    saved.mkdir()
    with page.expect_download() as download:
        ui.rerun(ui.button("Download manifest.json").click)
    download.value.save_as(saved / "manifest.json")
    (saved / "prompt.md").write_bytes(prompt.read_bytes())
    with open_workspace(streamlit_app.workspace) as ws:
        for folder in (out, saved):
            result = verify(ws, folder)
            assert result.ok, result.broken
    ui.check("export-written")

    # Calls: every teacher and student call of the walk is in the log.
    ui.go("Calls")
    expect(ui.metric("Errors")).to_have_text("0")
    ui.check("calls")

    # A stale save: carol changes the heuristic while alice edits it. alice's text is refused,
    # shown beside carol's, and "redo mine on theirs" starts from carol's text, so saving
    # keeps carol's change.
    ui.go("Heuristics")
    hid = _open_heuristic(ui)
    ui.tab("Edit")
    ui.click("Edit this heuristic")
    text = ui.main.get_by_role("textbox", name="Text", exact=True)
    with open_workspace(streamlit_app.workspace) as ws:
        current = review_rows.fetch(ws, hid)
        carols = current["text"] + " Carol: a changed payee is escalate-fraud too."
        review.edit(ws, hid, carols, Identity("carol"), base_version=current["version"])
    text.fill("Alice rewrote it from scratch.")
    ui.rerun(lambda: text.press("Control+Enter"))
    ui.click("Save")
    ui.see(ui.flash("Your edit was not saved", kind="Error"))
    expect(ui.main.get_by_text("what you started from", exact=False)).to_be_visible()
    expect(ui.main.get_by_text(re.compile(r"\(v\d+, draft by carol"))).to_be_visible()
    ui.check("stale-edit", expected_errors=("not saved",))
    ui.click("Redo mine on theirs")
    expect(text).to_have_value(carols)
    text.fill(carols + " Alice: and a new device.")
    ui.rerun(lambda: text.press("Control+Enter"))
    ui.click("Save")
    ui.see(ui.flash(re.compile(rf"Saved heuristic #{hid} as version")))
    with open_workspace(streamlit_app.workspace) as ws:
        saved = review_rows.fetch(ws, hid)
    assert saved["text"] == carols + " Alice: and a new device."
    ui.check("stale-redone")
