"""The provider-neutral part of the fake batch APIs: what was submitted, and how each batch ends.

A batch is answered request by request by the fake's own synchronous handler (the same replies,
tokens and errors as ``/v1/messages`` or ``/v1/chat/completions``), once it has been polled
``polls_to_finish`` times. The faults a test can set:

* ``create_faults``: HTTP statuses answered to the next batch creates (e.g. ``[429]``);
* ``expire_after``: the batch expires with only that many requests processed;
* ``errored``: ``custom_id -> bool``, requests that error inside a succeeded batch;
* ``malformed_line``: the results file has one line that is not JSON (the last succeeded
  request's);
* ``hold_polls``: every poll waits this long first (so a test can kill the client mid-poll).

``creates`` counts batch creates; ``submitted`` lists every custom id ever submitted, so a
test can see that nothing was submitted twice.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

_ids = itertools.count(1)


@dataclass
class FakeBatch:
    """One submitted batch and, once it ended, each request's outcome."""

    id: str
    requests: list[tuple[str, dict[str, Any]]]
    created_at: int
    metadata: dict[str, Any] | None = None
    input_file_id: str | None = None
    polls_left: int = 1
    state: str = "in_progress"  # in_progress | canceling | ended
    ending: str = "ended"  # ended | expired | canceled
    # custom_id -> ("succeeded", status, payload) | ("errored", status, payload)
    #              | ("expired",) | ("canceled",)
    outcomes: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    files: tuple[str | None, str | None] | None = None  # OpenAI's output and error file ids


class BatchBook:
    """The batches one fake server holds, and the faults it plays."""

    def __init__(self) -> None:
        self.batches: dict[str, FakeBatch] = {}
        self.creates = 0
        self.submitted: list[str] = []
        self.create_faults: deque[int] = deque()
        self.polls_to_finish = 1
        self.expire_after: int | None = None
        self.errored: Callable[[str], bool] = lambda custom_id: False
        self.malformed_line = False
        self.hold_polls = 0.0
        self.lock = threading.Lock()

    def create(self, prefix: str, requests: list[tuple[str, dict[str, Any]]],
               **extra: Any) -> FakeBatch | int:
        """A new batch, or the HTTP status of a create fault."""
        with self.lock:
            if self.create_faults:
                return self.create_faults.popleft()
            self.creates += 1
            self.submitted += [cid for cid, _ in requests]
            batch = FakeBatch(f"{prefix}{next(_ids)}", requests, int(time.time()),
                              polls_left=self.polls_to_finish, **extra)
            self.batches[batch.id] = batch
            return batch

    def poll(self, batch_id: str,
             answer: Callable[[dict[str, Any]], tuple[int, dict[str, Any]]]) -> FakeBatch | None:
        """Count one poll; a batch whose polls are used up is processed with ``answer``."""
        if self.hold_polls:
            time.sleep(self.hold_polls)
        with self.lock:
            batch = self.batches.get(batch_id)
            if batch is None or batch.state == "ended":
                return batch
            batch.polls_left -= 1
            if batch.state == "canceling":
                self._end(batch, answer, processed=0, ending="canceled")
            elif batch.polls_left <= 0:
                limit = self.expire_after
                self._end(batch, answer, processed=len(batch.requests) if limit is None
                          else limit, ending="ended" if limit is None else "expired")
            return batch

    def cancel(self, batch_id: str) -> FakeBatch | None:
        with self.lock:
            batch = self.batches.get(batch_id)
            if batch is not None and batch.state == "in_progress":
                batch.state = "canceling"
            return batch

    def _end(self, batch: FakeBatch,
             answer: Callable[[dict[str, Any]], tuple[int, dict[str, Any]]], *,
             processed: int, ending: str) -> None:
        for i, (cid, body) in enumerate(batch.requests):
            if i >= processed:
                batch.outcomes[cid] = ("expired",) if ending == "expired" else ("canceled",)
            elif self.errored(cid):
                batch.outcomes[cid] = ("errored", 500, {"message": "fake error inside batch"})
            else:
                status, payload = answer(body)
                batch.outcomes[cid] = ("succeeded" if status == 200 else "errored", status,
                                       payload)
        batch.state, batch.ending = "ended", ending

    def counts(self, batch: FakeBatch) -> dict[str, int]:
        """How many requests ended which way (all still processing until the batch ends)."""
        kinds = [o[0] for o in batch.outcomes.values()]
        return {"processing": len(batch.requests) - len(kinds),
                "succeeded": kinds.count("succeeded"), "errored": kinds.count("errored"),
                "expired": kinds.count("expired"), "canceled": kinds.count("canceled")}

    def garbled(self, batch: FakeBatch) -> str | None:
        """The request whose result line is written malformed: the last that succeeded."""
        if not self.malformed_line:
            return None
        ok = [cid for cid, o in batch.outcomes.items() if o[0] == "succeeded"]
        return ok[-1] if ok else None

    def find(self, batch_id: str) -> FakeBatch | None:
        with self.lock:
            return self.batches.get(batch_id)
