"""Stage 1, Extract: one teacher call per training example, one micro-instruction per call.

For each labelled example of a task's split the teacher answers the ``extract`` prompt with JSON
``{"reasoning", "rule"}``. The rule is one generalised, yes/no-checkable sentence ending in the
label it leads to. Each outcome is one ``micro_instructions`` row per (task, example, teacher):

* ``ok`` — the reply parsed; ``flags`` lists heuristic warnings for reviewers
  (:mod:`~pld.pipeline.extract.flags`);
* ``failed`` — the reply was not valid JSON even after one re-ask with the parse error, or the call
  itself failed for good; the raw reply, the error and the call id are kept, never dropped.

The stage is idempotent: examples with an ``ok`` row are skipped, and so are ``failed`` ones, which
stay visible as failed (counted in ``failed_before``): a rerun makes no uncached call. They are
asked again, with a fresh call, only when ``retry_failed`` is set (``--retry-failed``), updating the
same row. Completed calls are cached in ``llm_calls``, so a run killed half-way resumes without
repeating them. Each result is written in its own transaction as it arrives, so a kill loses only
the calls in flight.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from pld import prompts
from pld.errors import BadInput, NotReady
from pld.identity import Identity
from pld.llm import batch, calls
from pld.llm.fan_out import fan_out
from pld.llm.json_reply import loads_reply
from pld.llm.teacher_json import UnusableReply, ask_json
from pld.pipeline.concurrency import concurrency_for
from pld.pipeline.estimate import Planned
from pld.pipeline.extract.flags import flag_rule
from pld.pipeline.runs import ProgressCallback, Run, stage_run
from pld.tasks.store import TaskInfo, task_info
from pld.workspace import Workspace, dumps, now

STAGE = "extract"
OK, FAILED = "ok", "failed"
MAX_TOKENS = 400

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"reasoning": {"type": "string"}, "rule": {"type": "string"}},
    "required": ["reasoning", "rule"],
    "additionalProperties": False,
}


@dataclass(frozen=True)
class ExtractSummary:
    """The outcome of one :func:`extract` invocation.

    ``total``: examples considered; ``skipped``: of those, already ``ok`` before this run;
    ``done``: ``ok`` rows written by this run; ``failed``: ``failed`` rows written by this run;
    ``flagged``: of this run's ``ok`` rows, those with at least one flag; ``failed_before``:
    examples left ``failed`` by an earlier run and not asked again (see ``retry_failed``).
    """

    run_id: int
    total: int
    done: int
    skipped: int
    failed: int
    flagged: int
    failed_before: int = 0


@dataclass(frozen=True)
class _Outcome:
    """What one example's teacher exchange produced, ready to be written."""

    example_id: int
    label: str
    status: str
    reasoning: str | None = None
    rule: str | None = None
    flags: list[str] = field(default_factory=list)
    raw: str | None = None
    error: str | None = None
    call_id: int | None = None


# -- parsing the reply --------------------------------------------------------------------------

def parse_reply(text: str) -> dict[str, str]:
    """The ``{"reasoning", "rule"}`` object in a teacher reply; :class:`ValueError` if none.

    Markdown fences are stripped first; a reply with prose around one JSON object is accepted by
    reading from its first ``{`` to its last ``}``. Both keys must be non-empty strings.
    """
    obj = loads_reply(text)
    if not isinstance(obj, dict):
        raise ValueError(f"expected a JSON object, got {type(obj).__name__}")
    out: dict[str, str] = {}
    for key in ("reasoning", "rule"):
        if key not in obj:
            raise ValueError(f"missing key {key!r}")
        value = obj[key]
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"{key!r} must be a non-empty string")
        out[key] = " ".join(value.split())
    return out


# -- prompting ----------------------------------------------------------------------------------

def build_prompt(info: TaskInfo, example: dict[str, Any]) -> str:
    """The teacher's user message for one example (template ``pld/prompts/extract.md``).

    The example comes last so that local models reuse the cached prefix across examples.
    """
    return prompts.render(
        "extract",
        description=info.description.strip() or f"Classify each text of task {info.name!r}.",
        labels="\n".join(f"- {label}" for label in info.labels),
        rule_form=rule_form(info.shape),
        text=example["text"],
        label=example["label"],
    )


def rule_form(shape: str) -> str:
    """How a rule must read for tasks of this shape (``pld/prompts/rule_form_<shape>.md``)."""
    return prompts.render(f"rule_form_{shape.replace('-', '_')}").strip()


def _extract_one(ws: Workspace, info: TaskInfo, teacher: str, example: dict[str, Any],
                 run_id: int, fresh: bool) -> _Outcome:
    """Ask the teacher about one example (re-asked once when the reply does not parse).

    ``fresh`` bypasses the cache: the example failed before, and replaying its cached bad reply
    would only fail again.
    """
    base = _Outcome(example["id"], example["label"], FAILED)
    try:
        parsed, result = ask_json(
            ws, teacher, build_prompt(info, example), parse_reply, schema=SCHEMA,
            max_tokens=MAX_TOKENS, stage=STAGE, run_id=run_id, fresh=fresh,
            shape_hint=' {"reasoning": "...", "rule": "..."}')
    except UnusableReply as err:
        return _failed(base, raw=err.raw, call_id=err.call_id, error=str(err))
    except calls.CallFailed as err:
        return _failed(base, raw=None, call_id=err.call_id, error=f"call failed: {err}")
    flags = flag_rule(parsed["rule"], example["label"], info.labels, example["text"],
                      info.shape)
    return _Outcome(base.example_id, base.label, OK, parsed["reasoning"], parsed["rule"], flags,
                    None, None, result.call_id)


def _failed(base: _Outcome, *, raw: str | None, call_id: int, error: str) -> _Outcome:
    return _Outcome(base.example_id, base.label, FAILED, raw=raw, error=error, call_id=call_id)


_UPSERT = """
INSERT INTO micro_instructions
    (task, example_id, run_id, teacher, reasoning, rule, label, status, flags, raw, error,
     call_id, created_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (task, example_id, teacher) DO UPDATE SET
    run_id = excluded.run_id, reasoning = excluded.reasoning, rule = excluded.rule,
    label = excluded.label, status = excluded.status, flags = excluded.flags,
    raw = excluded.raw, error = excluded.error, call_id = excluded.call_id,
    created_at = excluded.created_at
WHERE excluded.status = 'ok' OR micro_instructions.status != 'ok'
"""


def _save(ws: Workspace, task: str, teacher: str, run_id: int, o: _Outcome) -> None:
    # The WHERE above keeps an ok row from being overwritten by a failure from a parallel run.
    with ws.write() as db:
        db.execute(_UPSERT, [task, o.example_id, run_id, teacher, o.reasoning, o.rule, o.label,
                             o.status, dumps(o.flags), o.raw, o.error, o.call_id, now()])


# -- the stage ----------------------------------------------------------------------------------

def extract(
    ws: Workspace,
    task: str,
    teacher: str,
    *,
    limit: int | None = None,
    concurrency: int | None = None,
    split: str = "train",
    retry_failed: bool = False,
    started_by: Identity | None = None,
    on_progress: ProgressCallback | None = None,
) -> ExtractSummary:
    """Write one micro-instruction per example of ``task``'s ``split``, asking ``teacher``.

    ``limit`` considers only the first N examples (by id). ``concurrency`` is the number of teacher
    calls in flight (default: 1 for local models, 8 for remote ones). Examples that failed before
    are left as they are unless ``retry_failed``, which asks them again bypassing the cache (a
    cached bad reply would only fail again). ``started_by``: who started the job, recorded on
    the run. Raises :class:`BadInput` for an unknown task, model
    string or option, :class:`NotReady` when the split is empty.
    """
    info = task_info(ws, task)
    concurrency = concurrency_for(teacher, concurrency)
    if limit is not None and limit < 1:
        raise BadInput(f"limit must be at least 1, got {limit}")
    todo = _Todo(ws, task, teacher, split, limit, retry_failed)
    total, skipped, failed_before = todo.counts()
    params = {"teacher": teacher, "split": split, "limit": limit, "concurrency": concurrency,
              "retry_failed": retry_failed}
    with stage_run(ws, task, STAGE, params, on_progress, started_by=started_by) as run:
        run.set_total(total, skipped + failed_before)
        done, failed, flagged = _work(ws, info, teacher, todo, concurrency, run)
    return ExtractSummary(run.id, total, done, skipped, failed, flagged, failed_before)


@dataclass(frozen=True)
class _Todo:
    """The examples of a split still to ask, read from the workspace a page at a time each
    time it is iterated (so 100,000 examples are never all in memory). Each row carries
    ``rule_status``: that of its rule by this teacher, None when it has none."""

    ws: Workspace
    task: str
    teacher: str
    split: str
    limit: int | None
    retry_failed: bool
    page: int = 1000

    def counts(self) -> tuple[int, int, int]:
        """Examples considered, those with a rule already, and those that failed before (and
        stay failed); raises :class:`NotReady` when the split is empty."""
        row = self.ws.query(
            "SELECT count(*) AS n, coalesce(sum(m.status = ?), 0) AS ok, "
            "coalesce(sum(m.status = ?), 0) AS failed FROM (SELECT id FROM examples WHERE "
            "task = ? AND split = ? ORDER BY id LIMIT ?) e LEFT JOIN micro_instructions m "
            "ON m.task = ? AND m.example_id = e.id AND m.teacher = ?",
            [OK, FAILED, self.task, self.split, -1 if self.limit is None else self.limit,
             self.task, self.teacher])[0]
        if not row["n"]:
            raise NotReady(f"task {self.task!r} has no {self.split!r} examples in "
                           f"{self.ws.path}; run: python -m pld load {self.task}")
        return row["n"], row["ok"], 0 if self.retry_failed else row["failed"]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        keep = (OK,) if self.retry_failed else (OK, FAILED)
        after, seen = -1, 0
        while self.limit is None or seen < self.limit:
            n = self.page if self.limit is None else min(self.page, self.limit - seen)
            rows = self.ws.query(
                "SELECT e.*, m.status AS rule_status FROM examples e LEFT JOIN "
                "micro_instructions m ON m.task = e.task AND m.example_id = e.id AND "
                "m.teacher = ? WHERE e.task = ? AND e.split = ? AND e.id > ? ORDER BY e.id "
                "LIMIT ?", [self.teacher, self.task, self.split, after, n])
            if not rows:
                return
            seen += len(rows)
            after = rows[-1]["id"]
            yield from (r for r in rows if r["rule_status"] not in keep)


def planned_calls(ws: Workspace, task: str, teacher: str, *, limit: int | None = None,
                  split: str = "train", retry_failed: bool = False) -> Iterator[Planned]:
    """The teacher calls :func:`extract` would make now (for ``--estimate-only``), one at a
    time (a large task's prompts are never all in memory); a re-ask after a reply that does
    not parse is not counted."""
    info = task_info(ws, task)
    todo = _Todo(ws, task, teacher, split, limit, retry_failed)
    todo.counts()  # an empty split is NotReady here too
    return _planned(info, teacher, todo)


def _planned(info: TaskInfo, teacher: str, todo: Iterable[dict[str, Any]]) -> Iterator[Planned]:
    """The first teacher call of each example in ``todo``, as :func:`_extract_one` makes it."""
    params = calls.call_params(max_tokens=MAX_TOKENS, json_schema=SCHEMA)
    return (Planned(teacher, STAGE, None, [{"role": "user", "content": build_prompt(info, ex)}],
                    params, fresh=ex["rule_status"] == FAILED) for ex in todo)


def _work(ws: Workspace, info: TaskInfo, teacher: str, todo: _Todo, concurrency: int,
          run: Run) -> tuple[int, int, int]:
    """Run the teacher calls on a pool, writing each outcome as it arrives."""
    done = failed = flagged = 0

    def work(ex: dict[str, Any]) -> _Outcome:
        return _extract_one(ws, info, teacher, ex, run.id, ex["rule_status"] == FAILED)

    # With --batch, the calls go through the provider's batch API first and are then
    # answered from the cache below; without it, this does nothing.
    batch.prefetch(ws, _planned(info, teacher, todo), run_id=run.id)
    for _, outcome in fan_out(work, todo, workers=concurrency, name="extract"):
        _save(ws, info.name, teacher, run.id, outcome)
        if outcome.status == OK:
            done += 1
            flagged += bool(outcome.flags)
        else:
            failed += 1
        run.advance()
    return done, failed, flagged
