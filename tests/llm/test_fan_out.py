"""The one call pool: every item once, results on the caller's thread, a bounded window of
items in flight (a stage over a large table never holds all its requests), the first error
stops it."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from pld.errors import BadInput
from pld.llm.base import ConfigError
from pld.llm.fan_out import WINDOW_PER_WORKER, fan_out


def test_every_item_once_with_its_result() -> None:
    out = dict(fan_out(lambda x: x * x, range(100), workers=4))
    assert out == {x: x * x for x in range(100)}
    assert dict(fan_out(lambda x: -x, [3, 1, 2], workers=1)) == {3: -3, 1: -1, 2: -2}


def test_items_are_taken_as_workers_free_up() -> None:
    taken = 0
    lock = threading.Lock()

    def source() -> Iterator[int]:
        nonlocal taken
        for i in range(10_000):
            with lock:
                taken += 1
            yield i

    def work(x: int) -> int:
        time.sleep(0.0005)
        return x

    workers, handed_back, most = 4, 0, 0
    for _ in fan_out(work, source(), workers=workers):
        handed_back += 1
        with lock:
            most = max(most, taken - handed_back)
    assert handed_back == 10_000
    assert most <= workers * WINDOW_PER_WORKER


def test_the_first_error_stops_the_rest() -> None:
    ran = []

    def work(x: int) -> int:
        ran.append(x)
        if x == 3:
            raise ValueError("item 3 is bad")
        return x

    with pytest.raises(ValueError, match="item 3"):
        list(fan_out(work, range(1000), workers=2))
    assert len(ran) <= 3 + 2 * WINDOW_PER_WORKER + 1  # queued items were dropped


def test_a_setup_problem_is_bad_input() -> None:
    def work(x: int) -> int:
        raise ConfigError("OPENAI_API_KEY is not set")

    with pytest.raises(BadInput, match="OPENAI_API_KEY"):
        list(fan_out(work, range(5), workers=3))
    with pytest.raises(BadInput, match="at least 1"):
        list(fan_out(work, range(5), workers=0))
