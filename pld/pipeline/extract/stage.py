"""Stage 1, Extract: one teacher call per training example, one micro-instruction per call.

For each labelled example of a task's split the teacher answers with JSON ``{"reasoning",
"rule"}``. The rule is one generalised, yes/no-checkable sentence ending in the label it leads
to. By default extraction is contrastive: the example is shown beside the most similar training
example of another label (:mod:`~pld.pipeline.extract.contrast`, prompt ``extract_contrast``)
and the rule says what separates them; without a contrast the prompt is ``extract``. A rule
stores the examples it came from (``source_examples``: ``{"source": id, "contrast": [ids]}``).
Given a student, examples the calibrated zero-shot student already answers right are left out
(:mod:`~pld.pipeline.extract.student_scores`): extraction starts where the student fails.
Each outcome is one ``micro_instructions`` row per (task, example, teacher):

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
from pld.pipeline.extract.contrast import Contrasts
from pld.pipeline.extract.flags import flag_rule
from pld.pipeline.extract.restatements import mark_restatements
from pld.pipeline.extract.student_scores import screen
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
    ``contrastive``: whether examples were paired (``contrast_note`` says why not where asked);
    ``contrasted``: this run's ``ok`` rows written from a pair. ``student_right``: examples
    left out because the calibrated zero-shot student answers them right (``screen_note`` says
    so in words). ``restatements``: the task's ok rules flagged ``restates_task`` after the run.
    """

    run_id: int
    total: int
    done: int
    skipped: int
    failed: int
    flagged: int
    failed_before: int = 0
    contrastive: bool = False
    contrasted: int = 0
    contrast_note: str = ""
    student_right: int = 0
    screen_note: str = ""
    restatements: int = 0


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
    sources: dict[str, Any] = field(default_factory=dict)


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

def build_prompt(info: TaskInfo, example: dict[str, Any],
                 contrast: dict[str, Any] | None = None) -> str:
    """The teacher's user message for one example (template ``pld/prompts/extract.md``), or
    for the example beside its ``contrast`` (``extract_contrast.md``).

    The examples come last so that local models reuse the cached prefix across examples.
    """
    values = {
        "description": info.description.strip() or f"Classify each text of task {info.name!r}.",
        "labels": "\n".join(f"- {label}" for label in info.labels),
        "rule_form": rule_form(info.shape), "text": example["text"], "label": example["label"]}
    if contrast is None:
        return prompts.render("extract", **values)
    return prompts.render("extract_contrast", **values, contrast_text=contrast["text"],
                          contrast_label=contrast["label"])


def rule_form(shape: str) -> str:
    """How a rule must read for tasks of this shape (``pld/prompts/rule_form_<shape>.md``)."""
    return prompts.render(f"rule_form_{shape.replace('-', '_')}").strip()


def _extract_one(ws: Workspace, info: TaskInfo, teacher: str, example: dict[str, Any],
                 run_id: int, fresh: bool) -> _Outcome:
    """Ask the teacher about one example (re-asked once when the reply does not parse).

    ``fresh`` bypasses the cache: the example failed before, and replaying its cached bad reply
    would only fail again.
    """
    contrast = example.get("contrast")
    sources = {"source": example["id"], "contrast": [contrast["id"]] if contrast else []}
    base = _Outcome(example["id"], example["label"], FAILED, sources=sources)
    try:
        parsed, result = ask_json(
            ws, teacher, build_prompt(info, example, contrast), parse_reply, schema=SCHEMA,
            max_tokens=MAX_TOKENS, stage=STAGE, run_id=run_id, fresh=fresh,
            shape_hint=' {"reasoning": "...", "rule": "..."}')
    except UnusableReply as err:
        return _failed(base, raw=err.raw, call_id=err.call_id, error=str(err))
    except calls.CallFailed as err:
        return _failed(base, raw=None, call_id=err.call_id, error=f"call failed: {err}")
    flags = flag_rule(parsed["rule"], example["label"], info.labels, example["text"],
                      info.shape)
    return _Outcome(base.example_id, base.label, OK, parsed["reasoning"], parsed["rule"], flags,
                    None, None, result.call_id, sources)


def _failed(base: _Outcome, *, raw: str | None, call_id: int, error: str) -> _Outcome:
    return _Outcome(base.example_id, base.label, FAILED, raw=raw, error=error, call_id=call_id,
                    sources=base.sources)


_UPSERT = """
INSERT INTO micro_instructions
    (task, example_id, run_id, teacher, reasoning, rule, label, status, flags, raw, error,
     call_id, source_examples, created_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (task, example_id, teacher) DO UPDATE SET
    run_id = excluded.run_id, reasoning = excluded.reasoning, rule = excluded.rule,
    label = excluded.label, status = excluded.status, flags = excluded.flags,
    raw = excluded.raw, error = excluded.error, call_id = excluded.call_id,
    source_examples = excluded.source_examples, created_at = excluded.created_at,
    task_similarity = NULL, similar_to = NULL
WHERE excluded.status = 'ok' OR micro_instructions.status != 'ok'
"""


def _save(ws: Workspace, task: str, teacher: str, run_id: int, o: _Outcome) -> None:
    # The WHERE above keeps an ok row from being overwritten by a failure from a parallel run.
    with ws.write() as db:
        db.execute(_UPSERT, [task, o.example_id, run_id, teacher, o.reasoning, o.rule, o.label,
                             o.status, dumps(o.flags), o.raw, o.error, o.call_id,
                             dumps(o.sources), now()])


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
    contrastive: bool = True,
    student: str | None = None,
    val_limit: int | None = None,
) -> ExtractSummary:
    """Write one micro-instruction per example of ``task``'s ``split``, asking ``teacher``.

    ``limit`` considers only the first N examples (by id). ``concurrency`` is the number of teacher
    calls in flight (default: 1 for local models, 8 for remote ones). Examples that failed before
    are left as they are unless ``retry_failed``, which asks them again bypassing the cache (a
    cached bad reply would only fail again). ``started_by``: who started the job, recorded on
    the run. ``contrastive``: pair each example with its most similar training example of
    another label. ``student``: leave out the examples this student already answers right
    under the zero-shot prompt, calibrated on the first ``val_limit`` validation items. Raises
    :class:`BadInput` for an unknown task, model string or option, :class:`NotReady` when the
    split is empty.
    """
    info = task_info(ws, task)
    concurrency = concurrency_for(teacher, concurrency)
    if student is not None:
        concurrency_for(student, None)  # a bad student string is bad input before any call
    if limit is not None and limit < 1:
        raise BadInput(f"limit must be at least 1, got {limit}")
    todo = _Todo(ws, task, teacher, split, limit, retry_failed)
    total, skipped, failed_before = todo.counts()
    picked = screen(ws, task, student, [ex["id"] for ex in todo], val_limit=val_limit,
                    on_progress=on_progress) if student is not None else None
    right = picked.right if picked is not None else frozenset()
    contrasts = Contrasts(ws, info, contrastive)
    params = {"teacher": teacher, "split": split, "limit": limit, "concurrency": concurrency,
              "retry_failed": retry_failed, "contrastive": contrasts.on, "student": student,
              "val_limit": val_limit, "student_right": len(right)}
    with stage_run(ws, task, STAGE, params, on_progress, started_by=started_by) as run:
        run.set_total(total, skipped + failed_before + len(right))
        pairs = _Pairs(todo, contrasts, right)
        done, failed, flagged, contrasted = _work(ws, info, teacher, pairs, concurrency, run)
        restatements = mark_restatements(ws, task)
    return ExtractSummary(run.id, total, done, skipped, failed, flagged, failed_before,
                          contrasts.on, contrasted, contrasts.note, len(right),
                          picked.note if picked is not None else "", restatements)


@dataclass(frozen=True)
class _Pairs:
    """The examples still to ask, each with its ``contrast`` (None when there is none), leaving
    out those in ``skip``."""

    todo: Iterable[dict[str, Any]]
    contrasts: Contrasts
    skip: frozenset[int]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return ({**ex, "contrast": self.contrasts.of(ex)} for ex in self.todo
                if ex["id"] not in self.skip)


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
                  split: str = "train", retry_failed: bool = False,
                  contrastive: bool = True) -> Iterator[Planned]:
    """The teacher calls :func:`extract` would make now (for ``--estimate-only``), one at a
    time (a large task's prompts are never all in memory); a re-ask after a reply that does
    not parse is not counted, nor are the student's calls of ``--student`` (and every example
    is counted, also those the student would leave out)."""
    info = task_info(ws, task)
    todo = _Todo(ws, task, teacher, split, limit, retry_failed)
    todo.counts()  # an empty split is NotReady here too
    return _planned(info, teacher, _Pairs(todo, Contrasts(ws, info, contrastive), frozenset()))


def _planned(info: TaskInfo, teacher: str, todo: Iterable[dict[str, Any]]) -> Iterator[Planned]:
    """The first teacher call of each example in ``todo``, as :func:`_extract_one` makes it."""
    params = calls.call_params(max_tokens=MAX_TOKENS, json_schema=SCHEMA)
    return (Planned(teacher, STAGE, None,
                    [{"role": "user", "content": build_prompt(info, ex, ex["contrast"])}],
                    params, fresh=ex["rule_status"] == FAILED) for ex in todo)


def _work(ws: Workspace, info: TaskInfo, teacher: str, todo: _Pairs, concurrency: int,
          run: Run) -> tuple[int, int, int, int]:
    """Run the teacher calls on a pool, writing each outcome as it arrives."""
    done = failed = flagged = contrasted = 0

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
            contrasted += bool(outcome.sources["contrast"])
        else:
            failed += 1
        run.advance()
    return done, failed, flagged, contrasted
