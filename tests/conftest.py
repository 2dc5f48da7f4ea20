"""Shared fixtures: a fresh workspace per test, fast retries, fake provider servers; and the
guard that keeps the embedded model's weights out of every test not marked ``model``."""

from __future__ import annotations

import os
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from pld.identity import Identity
from pld.workspace import Workspace, open_workspace
from tests.fakes.openai_server import FakeOpenAI

# Under /dev/null nothing can be created: pld's weight cache ($PLD_MODEL_CACHE) there makes any
# load of the local model's weights fail, naming this path.
NO_WEIGHTS = "/dev/null/no-model-weights-in-tests-not-marked-pytest.mark.model"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under pytest-xdist (``-n auto --dist loadgroup``) all tests that load the real weights
    run on one worker, one after another: two llama.cpp processes on few cores slow each other
    far more than twice. The browser tests share a worker for the same reason."""
    for item in items:
        if item.get_closest_marker("model"):
            item.add_marker(pytest.mark.xdist_group("model"))
        elif "tests/e2e/" in item.nodeid:
            item.add_marker(pytest.mark.xdist_group("browser"))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None
                            ) -> Generator[None, object, object]:
    """A test without the ``model`` marker cannot load the real weights, so ``-m "not model"``
    stays fast and a test that needs them but lacks the marker fails instead of slowing it.

    Set around the whole test, fixtures of any scope included; child processes (CLI runs,
    jobs, model servers) inherit it.
    """
    if item.get_closest_marker("model"):
        return (yield)
    before = os.environ.get("PLD_MODEL_CACHE")
    os.environ["PLD_MODEL_CACHE"] = NO_WEIGHTS
    try:
        return (yield)
    finally:
        if before is None:
            os.environ.pop("PLD_MODEL_CACHE", None)
        else:
            os.environ["PLD_MODEL_CACHE"] = before


@pytest.fixture(autouse=True)
def _fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Backoff in tests is milliseconds, not seconds; retry-after is capped the same way."""
    monkeypatch.setenv("PLD_RETRY_BASE_S", "0.01")
    monkeypatch.setenv("PLD_RETRY_MAX_S", "0.05")
    monkeypatch.setenv("PLD_LLM_TIMEOUT", "5")


@pytest.fixture
def ws_path(tmp_path: Path) -> Path:
    return tmp_path / "workspace.db"


@pytest.fixture
def ws(ws_path: Path) -> Iterator[Workspace]:
    """A new, empty workspace in a temporary folder."""
    w = open_workspace(ws_path)
    yield w
    w.close()


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAI]:
    """A fake OpenAI-compatible server on 127.0.0.1; set ``.responder`` to script answers."""
    with FakeOpenAI() as f:
        yield f


def approve_seen(ws: Workspace, heuristic_id: int, who: Identity,
                 **kwargs: Any) -> dict[str, Any]:
    """Approve a heuristic as a reviewer who has just read its current version."""
    from pld import review, review_rows

    version = review_rows.fetch(ws, heuristic_id)["version"]
    return review.approve(ws, heuristic_id, who, base_version=version, **kwargs)
