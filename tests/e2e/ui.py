"""What a person does in the app, driven in headless Chromium (:class:`Ui`): click, type,
choose, open pages, each followed by waiting until the app has settled, and full-page
screenshots that fail on any Streamlit exception or error box not expected."""

from __future__ import annotations

import re
from pathlib import Path

from playwright.sync_api import Locator, Page, expect
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

STEP_TIMEOUT_MS = 30_000    # a page run, a button's callback
QUIET_MS = 300              # how long the app must stay idle to count as settled
RETYPE_TIMEOUT_MS = 10_000  # no run this long after Enter: the typed text was lost, type again

# Counts the runs the app starts: the attribute flips to "running" for each script run. Under
# load React may also re-mount the element already "running" (a childList change, no attribute
# change), so added nodes are looked at too.
_RUN_COUNTER = """
(() => {
  window.__pldRuns = 0;
  const RUNNING = '[data-test-script-state="running"]';
  new MutationObserver((records) => {
    for (const r of records) {
      if (r.type === 'attributes') {
        if (r.target.getAttribute('data-test-script-state') === 'running') window.__pldRuns++;
        continue;
      }
      for (const n of r.addedNodes) {
        if (n.nodeType === 1 && (n.matches(RUNNING) || n.querySelector(RUNNING))) {
          window.__pldRuns++;
        }
      }
    }
  }).observe(document, {attributes: true, childList: true, subtree: true,
                        attributeFilter: ['data-test-script-state']});
})();
"""
_IDLE_FOR = """
([quietMs]) => {
  const app = document.querySelector('[data-testid="stApp"]');
  const idle = app && app.getAttribute('data-test-script-state') === 'notRunning';
  const now = performance.now();
  if (!idle) { window.__pldIdleSince = null; return false; }
  if (window.__pldIdleSince == null) window.__pldIdleSince = now;
  return now - window.__pldIdleSince >= quietMs;
}
"""
_CONTENT_HEIGHT = """
() => Math.max(...['stMain', 'stAppViewContainer', 'stSidebarContent'].map((id) => {
  const el = document.querySelector(`[data-testid="${id}"]`);
  return el ? el.scrollHeight : 0;
}), document.documentElement.scrollHeight)
"""


class Ui:
    """What a person does in the app, each action followed by waiting for the app to settle."""

    def __init__(self, page: Page, artifacts: Path) -> None:
        self.page = page
        self.artifacts = artifacts
        page.add_init_script(_RUN_COUNTER)  # before the first visit: it counts every run
        self.main = page.get_by_test_id("stMain")
        self.sidebar = page.get_by_test_id("stSidebar")
        self.shots: list[Path] = []

    # -- waiting ---------------------------------------------------------------------------
    def settle(self, timeout_ms: int = STEP_TIMEOUT_MS) -> None:
        """Wait until no script run has been going for :data:`QUIET_MS`."""
        self.page.evaluate("window.__pldIdleSince = null")
        self.page.wait_for_function(_IDLE_FOR, arg=[QUIET_MS], timeout=timeout_ms,
                                    polling=50)

    def rerun(self, action: object, timeout_ms: int = STEP_TIMEOUT_MS) -> None:
        """Do ``action`` (a callable) that makes the app run again; wait for that run to end."""
        # A run still going (say, from a download click) would absorb the new one without a
        # fresh flip to "running", and the counter below would wait for nothing.
        self.settle()
        before = self.page.evaluate("window.__pldRuns")
        action()  # type: ignore[operator]
        self.page.wait_for_function("(n) => window.__pldRuns > n", arg=before,
                                    timeout=timeout_ms, polling=20)
        self.settle()

    def see(self, locator: Locator, timeout_ms: int = STEP_TIMEOUT_MS) -> None:
        """Wait until ``locator`` is visible, then until the app settles."""
        expect(locator).to_be_visible(timeout=timeout_ms)
        self.settle()

    # -- widgets ---------------------------------------------------------------------------
    def button(self, name: str, scope: Locator | None = None) -> Locator:
        return (scope or self.main).get_by_role("button", name=name, exact=True)

    def click(self, name: str, scope: Locator | None = None) -> None:
        """Click a button (it reruns the app)."""
        self.rerun(lambda: self.button(name, scope).click())

    def go(self, link: str, title: str | None = None) -> None:
        """Open a page from the sidebar navigation; wait for its title."""
        nav = self.page.get_by_test_id("stSidebarNav")
        target = nav.get_by_role("link", name=link, exact=True)
        try:
            target.wait_for(timeout=10_000)
        except PlaywrightTimeoutError:
            # Streamlit now and then keeps listing the pages/ folder by file name in a session
            # opened at a sub-page's address (it reads the folder beside app.py before
            # st.navigation runs); a reload brings the app's own navigation back.
            self.page.reload()
            target.wait_for()
        self.rerun(lambda: target.click())
        self.see(self.main.get_by_role("heading", name=title or link, level=1))

    def choose(self, label: str, option: str | re.Pattern[str],
               scope: Locator | None = None) -> None:
        """Pick ``option`` in the select box labelled ``label`` (a BaseWeb select)."""
        box = (scope or self.main).get_by_role("combobox", name=label, exact=True)
        current = box.input_value()
        if current == option or (isinstance(option, re.Pattern) and option.search(current)):
            return  # already chosen: picking it again would not rerun the app
        opt = self.open_list(box).filter(has_text=option).first
        self.rerun(opt.click)

    def open_list(self, box: Locator) -> Locator:
        """Open the list of select box ``box``; return its options. A run that redraws the box
        (its choice is sent again after the label changed) can close the list as it opens:
        wait for the app to settle and open it again, twice at most."""
        options = self.page.get_by_role("option")
        for attempt in range(3):
            box.click()
            try:
                expect(options.first).to_be_visible(timeout=5000)
                return options
            except AssertionError:
                if attempt == 2:
                    raise
                self.page.keyboard.press("Escape")
                self.settle()
        return options

    def type(self, label: str, text: str, scope: Locator | None = None,
             role: str = "textbox") -> None:
        """Replace the text of the input labelled ``label`` and press Enter (commits it)."""
        field = (scope or self.main).get_by_role(role, name=label, exact=True)  # type: ignore[arg-type]
        # Under heavy load (CI beside a benchmark) React can re-mount the input between fill
        # and Enter, dropping the typed text, so no run follows: type it again, twice at most.
        for attempt in range(3):
            try:
                field.fill(text)
                self.rerun(lambda: field.press("Enter"), timeout_ms=RETYPE_TIMEOUT_MS)
                break
            except PlaywrightTimeoutError:
                if attempt == 2:
                    raise
        expect(field).to_have_value(text)

    def tick(self, label: str) -> None:
        """Tick the checkbox labelled ``label`` (it reruns the app)."""
        box = self.main.get_by_test_id("stCheckbox").filter(has_text=label)
        self.rerun(lambda: box.locator("label").click())
        expect(box.get_by_role("checkbox")).to_be_checked()

    def tab(self, name: str | re.Pattern[str]) -> None:
        """Show a tab (tabs switch in the browser, without a run)."""
        self.main.get_by_role("tab", name=name).click()

    def expand(self, title: str) -> None:
        """Open an expander if it is closed (no run either)."""
        summary = self.main.locator("summary", has_text=title)
        details = summary.locator("xpath=..")
        if details.get_attribute("open") is None:
            summary.click()
        expect(details).to_have_attribute("open", re.compile(".*"))

    def metric(self, label: str) -> Locator:
        """The value of the metric labelled ``label``."""
        box = self.main.get_by_test_id("stMetric").filter(
            has=self.page.get_by_test_id("stMetricLabel").get_by_text(label, exact=True))
        return box.get_by_test_id("stMetricValue")

    def flash(self, text: str | re.Pattern[str], kind: str = "Success") -> Locator:
        """An alert box of ``kind`` (Success, Info, Warning, Error) holding ``text``."""
        return self.main.get_by_test_id(f"stAlertContent{kind}").filter(has_text=text)

    # -- evidence --------------------------------------------------------------------------
    def check(self, name: str, expected_errors: tuple[str, ...] = ()) -> None:
        """Screenshot the whole page as ``NN-name.png``; fail on exceptions and stray errors."""
        self.settle()
        path = self.artifacts / f"{len(self.shots) + 1:02d}-{name}.png"
        size = self.page.viewport_size or {"width": 1400, "height": 1000}
        height = int(self.page.evaluate(_CONTENT_HEIGHT))
        # The app scrolls inside its own containers: a tall window shows all of it at once.
        self.page.set_viewport_size({"width": size["width"],
                                     "height": max(size["height"], min(height + 120, 12_000))})
        try:
            self.page.evaluate("() => new Promise((r) => requestAnimationFrame(() => "
                               "requestAnimationFrame(r)))")
            self.page.screenshot(path=str(path), full_page=True)
        finally:
            self.page.set_viewport_size(size)
        self.shots.append(path)
        exceptions = self.page.get_by_test_id("stException")
        assert exceptions.count() == 0, (
            f"{name}: Streamlit exception on the page (see {path}):\n"
            + "\n---\n".join(exceptions.all_inner_texts()))
        errors = [e.lower() for e in
                  self.page.get_by_test_id("stAlertContentError").all_inner_texts()]
        expected = [x.lower() for x in expected_errors]
        stray = [e for e in errors if not any(x in e for x in expected)]
        assert not stray, f"{name}: unexpected error box(es) (see {path}): {stray}"
        for wanted in expected:
            assert any(wanted in e for e in errors), f"{name}: expected error {wanted!r} missing"
