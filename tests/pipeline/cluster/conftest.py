"""The clustering tests' rules: synthetic rules in three clear topics, embedded by MiniLM."""

from __future__ import annotations

import pytest

from pld.workspace import Workspace
from tests.pipeline.test_embed import add_rules, topic_rules

TASK = "support"


@pytest.fixture
def rules(ws: Workspace) -> dict[int, str]:
    """The 39 topic rules stored as ok rules: rule id -> gold topic."""
    ids = add_rules(ws, TASK, topic_rules())
    return dict(zip(ids, [label for _, label in topic_rules()], strict=True))
