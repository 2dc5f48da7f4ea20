"""The one way to fan model calls out: a thread pool whose results come back on the caller's
thread, as they finish.

Extraction, consolidation, the conflict loop's teacher calls and the student's predictions all
run one call per item on a pool of ``workers`` threads (the provider's rate limit or the local
model's slots set how many). Results are handed back on the calling thread, so writing them to
the workspace and counting progress need no locking. The first exception an item raises
propagates: calls already in flight finish (and land in the cache), queued ones are dropped.
A :class:`~pld.llm.base.ConfigError` (a missing API key, model files that cannot be found) is
raised as :class:`~pld.errors.BadInput`, since no other item can succeed either.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import TypeVar

from pld.errors import BadInput
from pld.llm.base import ConfigError

T = TypeVar("T")
R = TypeVar("R")


# Items submitted ahead of the free workers: enough to keep every worker busy, few enough that
# a stage over 100,000 examples holds a bounded window of requests and replies, not all of them.
WINDOW_PER_WORKER = 2


def fan_out(work: Callable[[T], R], items: Iterable[T], *, workers: int,
            name: str = "pld") -> Iterator[tuple[T, R]]:
    """Yield ``(item, work(item))`` for every item, in the order the calls finish.

    Items are taken from ``items`` as workers free up (at most ``workers`` x
    :data:`WINDOW_PER_WORKER` submitted and not yet handed back), so ``items`` may be a
    generator over a large table. With one worker the items run inline, in order, on the
    calling thread.
    """
    if workers < 1:
        raise BadInput(f"concurrency must be at least 1, got {workers}")
    if workers == 1:
        for item in items:
            yield item, _call(work, item)
        return
    source = iter(items)
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"pld-{name}")
    try:
        pending: dict[Future[R], T] = {}

        def refill() -> None:
            for item in itertools.islice(source, workers * WINDOW_PER_WORKER - len(pending)):
                pending[pool.submit(work, item)] = item

        refill()
        while pending:
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in finished:
                item = pending.pop(fut)
                yield item, _result(fut)
            refill()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _call(work: Callable[[T], R], item: T) -> R:
    try:
        return work(item)
    except ConfigError as e:
        raise BadInput(str(e)) from e


def _result(fut: Future[R]) -> R:
    try:
        return fut.result()
    except ConfigError as e:
        raise BadInput(str(e)) from e
