"""Shared fixtures: a fresh workspace per test, fast retries, fake provider servers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pld.workspace import Workspace, open_workspace
from tests.fakes.openai_server import FakeOpenAI


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


def approve_seen(ws: Workspace, heuristic_id: int, who: str, **kwargs: Any) -> dict[str, Any]:
    """Approve a heuristic as a reviewer who has just read its current version."""
    from pld import review

    version = review.fetch(ws, heuristic_id)["version"]
    return review.approve(ws, heuristic_id, who, base_version=version, **kwargs)
