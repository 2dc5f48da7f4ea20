"""A hard spending limit for one command (``--max-cost USD``).

Every model call goes through :func:`pld.llm.calls.complete`, which asks the active budget
before each call that would reach a paid model: when the call's estimated cost would take the
command's running total past the limit, :class:`BudgetReached` is raised instead of calling.
The stage's run is then marked ``interrupted`` (finished work is kept, and cached calls cost
nothing), so the same command with a higher ``--max-cost`` goes on where it stopped.

A call's cost is estimated before it is made from its text (about 4 characters a token) and
the reply length the call log measured for that model and stage (the call's ``max_tokens``
while there is none); after the call, its measured cost is charged. Calls already in flight
on other threads when the limit is reached finish and are charged, so the total can pass the
limit by at most those calls.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from pld.errors import BadInput
from pld.llm.pricing import is_priced

CHARS_PER_TOKEN = 4


class BudgetReached(Exception):
    """The next call would take the command past its ``--max-cost``; nothing was sent."""

    def __init__(self, budget: Budget, model: str, next_cost: float) -> None:
        self.spent, self.max_usd, self.calls = budget.spent, budget.max_usd, budget.calls
        super().__init__(
            f"stopped before passing --max-cost ${budget.max_usd:.2f}: this command spent "
            f"${budget.spent:.4f} on {budget.calls} call(s), and the next {model} call "
            f"(about ${next_cost:.4f}) would pass it; finished work is kept: run the same "
            "command with a higher --max-cost to go on")


@dataclass
class Budget:
    """The limit and the running total of one command (thread-safe)."""

    max_usd: float
    spent: float = 0.0
    calls: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def admit(self, model: str, est_cost: float) -> None:
        """Raise :class:`BudgetReached` when a call of ``est_cost`` would pass the limit."""
        with self._lock:
            if self.spent + est_cost > self.max_usd:
                raise BudgetReached(self, model, est_cost)

    def charge(self, cost: float) -> None:
        """Add a finished call's measured cost (or a batched request's estimate, reserved
        when it is submitted)."""
        with self._lock:
            self.spent += cost
            self.calls += 1

    def adjust(self, delta: float) -> None:
        """Correct the total once the measured cost of reserved requests is known."""
        with self._lock:
            self.spent += delta


_active: Budget | None = None


def active() -> Budget | None:
    """The budget of the command running in this process, if it set one."""
    return _active


@contextmanager
def limit(max_usd: float | None, models: tuple[str, ...] = ()) -> Iterator[Budget | None]:
    """Run the body under a ``max_usd`` limit (None: no limit). ``models`` are checked first:
    a paid model without a known price could not be held to any limit, so it is refused."""
    global _active
    if max_usd is None:
        yield None
        return
    if max_usd <= 0:
        raise BadInput(f"--max-cost must be more than 0, got {max_usd:g}")
    for model in models:
        if not is_priced(model):
            raise BadInput(f"--max-cost: no price is known for {model}, so its spend cannot be "
                           "limited; add it to pld/llm/pricing.py")
    previous, _active = _active, Budget(max_usd)
    try:
        yield _active
    finally:
        _active = previous


def text_tokens(system: str | None, messages: list[dict[str, Any]]) -> int:
    """A call's input tokens, estimated from its characters."""
    chars = len(system or "") + sum(len(str(m.get("content", ""))) for m in messages)
    return chars // CHARS_PER_TOKEN + 1
