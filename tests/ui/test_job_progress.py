"""What a running job says it is doing (pld.ui.job_progress.progress_label)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pld.ui.job_progress import progress_label

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def test_a_job_says_what_it_is_doing_with_rate_and_time_left() -> None:
    starting = {"kind": "extract", "stage": None, "pid": 7, "done": 0, "total": 0}
    assert progress_label(starting, NOW) == \
        "extract: starting (loading the model and the data) · pid 7"
    preparing = {**starting, "stage": "extract", "run_started_at": NOW.isoformat()}
    assert progress_label(preparing, NOW) == "extract (extract): preparing · pid 7"
    begun = (NOW - timedelta(minutes=2)).isoformat()
    running = {**preparing, "done": 10, "total": 40, "run_started_at": begun}
    assert progress_label(running, NOW) == \
        "extract (extract): 10 of 40 · 5.0/min · about 6 min left · pid 7"
