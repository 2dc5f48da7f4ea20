"""Fixtures of the browser test: a scripted model server, the app under ``streamlit run``, and a
headless Chromium page on it.

* ``fake_llm``: the fake OpenAI-compatible server answering with the chain test's ``scripted``
  responder (teacher and student), in this process on 127.0.0.1; one per test module.
* ``streamlit_app``: ``streamlit run app.py`` on a free localhost port, its workspace in a
  temporary folder and its teacher/student models set to the fake (the sidebar's defaults come
  from ``$PLD_TEACHER``/``$PLD_STUDENT``). Stopped, with any job it started, at teardown.
* ``oidc`` and ``streamlit_app_oidc``: a fake OpenID Connect provider on 127.0.0.1 and the app
  with ``[auth]`` pointing at it (its own secrets file), for the login test.
* ``browser`` (Debian's ``/usr/bin/chromium``, never a downloaded one; one per test module) and
  ``browser_page``: a Chromium page; when the test fails, its last state is saved as
  ``failure.png`` next to the step screenshots.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from pld import jobs
from tests.fakes.oidc_server import CLIENT_ID as OIDC_CLIENT_ID
from tests.fakes.oidc_server import CLIENT_SECRET as OIDC_CLIENT_SECRET
from tests.fakes.oidc_server import FakeOIDC
from tests.fakes.openai_server import FakeOpenAI, FakeOpenAIBatches
from tests.pipeline.test_chain import scripted

REPO_ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO_ROOT / "test-artifacts" / "e2e"
CHROMIUM = Path("/usr/bin/chromium")
# No internet here: without these, Chromium keeps trying to reach Google services.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
VIEWPORT = {"width": 1400, "height": 1000}
STARTUP_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class RunningApp:
    """The app under test: where to browse, and the files it writes."""

    url: str
    workspace: Path
    log: Path
    model: str


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_healthy(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"streamlit exited with {proc.returncode} before serving; see {log}:\n"
                        + log.read_text(errors="replace")[-3000:])
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.read().strip() == b"ok":
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    pytest.fail(f"streamlit did not answer {url}/_stcore/health in {STARTUP_TIMEOUT_S:.0f} s; "
                f"see {log}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    # The server runs in its own session: stop its whole group, then make sure.
    for sig, wait_s in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        if proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            continue


@pytest.fixture
def artifacts() -> Path:
    """``test-artifacts/e2e`` at the repository root, emptied of earlier screenshots."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for old in ARTIFACTS.glob("*.png"):
        old.unlink()
    return ARTIFACTS


@pytest.fixture(scope="module")
def fake_llm() -> Iterator[FakeOpenAI]:
    """The scripted teacher and student of the chain test, on 127.0.0.1, with the Batch API
    (``--batch``) beside the chat completions."""
    from pld.tasks.demo import DEMO_LABELS

    def first_token(body: dict[str, Any]) -> list[tuple[str, float]]:
        # The student leans to its answer; every other label gets a score too, so the
        # Evaluate page has calibrated answers to show.
        answer = scripted(body)
        return [(answer, -0.2), *((label, -2.5) for label in DEMO_LABELS if label != answer)]

    with FakeOpenAIBatches(responder=scripted) as fake:
        fake.first_token_logprobs = first_token
        yield fake


@pytest.fixture
def streamlit_app(tmp_path: Path, fake_llm: FakeOpenAI, artifacts: Path) -> Iterator[RunningApp]:
    """``streamlit run app.py`` on a free port, with a fresh workspace and the fake's models."""
    yield from run_app(tmp_path, fake_llm, artifacts, free_port(), [])


@pytest.fixture
def oidc() -> Iterator[FakeOIDC]:
    """A fake OpenID Connect provider that logs in a verified bank reviewer."""
    with FakeOIDC(user={"sub": "u-1001", "email": "Carl@Bank.example",
                        "email_verified": True, "name": "Carl"}) as idp:
        yield idp


@pytest.fixture
def streamlit_app_oidc(tmp_path: Path, fake_llm: FakeOpenAI, artifacts: Path,
                       oidc: FakeOIDC) -> Iterator[RunningApp]:
    """The app with ``[auth]`` pointing at the fake provider (a secrets file of its own)."""
    port = free_port()
    secrets_file = tmp_path / "secrets.toml"
    secrets_file.write_text(
        "[auth]\n"
        f'redirect_uri = "http://127.0.0.1:{port}/oauth2callback"\n'
        f'cookie_secret = "{os.urandom(16).hex()}"\n'
        f'client_id = "{OIDC_CLIENT_ID}"\n'
        f'client_secret = "{OIDC_CLIENT_SECRET}"\n'
        f'server_metadata_url = "{oidc.issuer}/.well-known/openid-configuration"\n')
    yield from run_app(tmp_path, fake_llm, artifacts, port,
                        ["--secrets.files", str(secrets_file)])


def run_app(tmp_path: Path, fake_llm: FakeOpenAI, artifacts: Path, port: int,
            extra: list[str]) -> Iterator[RunningApp]:
    """``streamlit run app.py`` on ``port`` with extra arguments ``extra``, its workspace
    ``tmp_path/workspace.db`` (kept if already there) and its log in ``artifacts``; stopped,
    with any job it started, when the generator closes."""
    workspace = tmp_path / "workspace.db"
    log = artifacts / "streamlit.log"
    model = fake_llm.model_string()
    env = {**os.environ, "PLD_WORKSPACE": str(workspace), "PLD_TEACHER": model,
           "PLD_STUDENT": model, "PYTHONUNBUFFERED": "1", "PLD_BATCH_POLL_S": "0.3"}
    cmd = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
           "--server.port", str(port), "--server.address", "127.0.0.1",
           "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none", *extra]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, proc, log)
        yield RunningApp(url=url, workspace=workspace, log=log, model=model)
    finally:
        _stop(proc)
        # Jobs run detached from the server (their own sessions): stop any still running.
        jobs.stop_jobs(workspace, timeout_s=5)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Headless Debian Chromium through Playwright (no browser download)."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} not found: the browser test needs Debian's chromium package "
                    "(apt-get install chromium; .ci/run installs it). Do not use "
                    "`playwright install`: it cannot download here.")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Remember each phase's report on the test item (``browser_page`` reads it)."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


@pytest.fixture
def browser_page(browser: Browser, streamlit_app: RunningApp, artifacts: Path,
                 request: pytest.FixtureRequest) -> Iterator[Page]:
    """A page of a fresh browser context (downloads allowed); ``failure.png`` if the test fails."""
    context = browser.new_context(viewport=VIEWPORT, accept_downloads=True)
    page = context.new_page()
    try:
        yield page
    finally:
        rep = getattr(request.node, "rep_call", None)
        if rep is not None and rep.failed:
            try:
                page.screenshot(path=str(artifacts / "failure.png"), full_page=True)
            except Exception as e:  # the page may be gone; the failure itself is reported
                print(f"could not save failure.png: {e}")
        context.close()
