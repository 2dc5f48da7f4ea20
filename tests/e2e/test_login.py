"""Logging in through OIDC in a real browser: the app with ``[auth]`` configured, a fake
OpenID Connect provider on 127.0.0.1 (tests/fakes/oidc_server.py), headless Chromium.

A visitor who is not logged in gets the login prompt on every page and no control that changes
anything; after the real ``st.login`` round trip (authorization code, signed ID token checked by
Authlib) the reviewer is their provider-verified email, and what they do is recorded as ``oidc``.
"""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Browser, Page, expect

from pld.workspace import open_workspace
from tests.e2e.conftest import VIEWPORT, RunningApp
from tests.fakes.oidc_server import FakeOIDC

TIMEOUT_MS = 30_000
PAGES = ["", "data", "micro-instructions", "clusters", "heuristics", "conflicts", "evaluate",
         "export", "calls"]
MUTATING = ["stFileUploader", "stTextInput", "stTextArea", "stSelectbox", "stDownloadButton",
            "stDataFrame", "stCode"]


def _settle(page: Page) -> None:
    expect(page.get_by_test_id("stApp")).to_have_attribute(
        "data-test-script-state", "notRunning", timeout=TIMEOUT_MS)


def _gate_only(page: Page) -> None:
    """The page shows the login prompt and nothing a visitor could read or change."""
    expect(page.get_by_text("log in to see or change anything")).to_be_visible(
        timeout=TIMEOUT_MS)
    _settle(page)
    expect(page.get_by_test_id("stButton")).to_have_count(1, timeout=TIMEOUT_MS)
    expect(page.get_by_test_id("stButton")).to_have_text("Log in")
    for testid in MUTATING:
        assert page.get_by_test_id(testid).count() == 0, testid


def test_a_visitor_changes_nothing_and_a_login_signs_as_oidc(
        browser: Browser, streamlit_app_oidc: RunningApp, oidc: FakeOIDC,
        artifacts: Path) -> None:
    app = streamlit_app_oidc
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    try:
        for path in PAGES:
            page.goto(f"{app.url}/{path}")
            _gate_only(page)
        page.screenshot(path=str(artifacts / "login-1-visitor.png"), full_page=True)
        assert oidc.logins == 0

        page.goto(app.url)
        _settle(page)
        page.get_by_role("button", name="Log in").click()
        # Authorization code round trip: the provider answers at once, Authlib checks the
        # signed ID token, Streamlit sets its cookie and reloads the app.
        sidebar = page.get_by_test_id("stSidebar")
        expect(sidebar.get_by_text("Signed in as")).to_be_visible(timeout=TIMEOUT_MS)
        expect(sidebar).to_contain_text("carl@bank.example", timeout=TIMEOUT_MS)
        assert oidc.logins == 1
        page.goto(f"{app.url}/data")
        _settle(page)
        # The controls a visitor could not see are there now (the upload is in its tab).
        expect(page.get_by_test_id("stFileUploader")).to_have_count(1, timeout=TIMEOUT_MS)
        page.get_by_test_id("stMain").get_by_role("button", name="Load", exact=True).click()
        expect(page.get_by_text("Loaded demo:")).to_be_visible(timeout=TIMEOUT_MS)
        page.screenshot(path=str(artifacts / "login-2-signed-in.png"), full_page=True)
    finally:
        context.close()
    with open_workspace(app.workspace) as ws:
        loads = ws.query("SELECT who, identity_kind FROM reviews WHERE entity = 'task' "
                         "AND action = 'load'")
    assert loads == [{"who": "carl@bank.example", "identity_kind": "oidc"}]
