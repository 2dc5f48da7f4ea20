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

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import TypeVar

from pld.errors import BadInput
from pld.llm.base import ConfigError

T = TypeVar("T")
R = TypeVar("R")


def fan_out(work: Callable[[T], R], items: Sequence[T], *, workers: int,
            name: str = "pld") -> Iterator[tuple[T, R]]:
    """Yield ``(item, work(item))`` for every item, in the order the calls finish.

    With one worker (or one item) the items run inline, in order, on the calling thread.
    """
    if workers < 1:
        raise BadInput(f"concurrency must be at least 1, got {workers}")
    if workers == 1 or len(items) <= 1:
        for item in items:
            yield item, _call(work, item)
        return
    pool = ThreadPoolExecutor(max_workers=min(workers, len(items)),
                              thread_name_prefix=f"pld-{name}")
    try:
        pending: dict[Future[R], T] = {pool.submit(work, item): item for item in items}
        while pending:
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in finished:
                item = pending.pop(fut)
                yield item, _result(fut)
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
