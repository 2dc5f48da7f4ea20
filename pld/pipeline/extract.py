"""Stage 1, Extract: one teacher call per training example, one micro-instruction per call.

For each labelled example of a task's split the teacher answers the ``extract`` prompt with JSON
``{"reasoning", "rule"}``. The rule is one generalised, yes/no-checkable sentence ending in the
label it leads to. Each outcome is one ``micro_instructions`` row per (task, example, teacher):

* ``ok`` — the reply parsed; ``flags`` lists heuristic warnings for reviewers (see :data:`FLAGS`);
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

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from pld import prompts
from pld.errors import BadInput, NotReady
from pld.llm import batch, calls
from pld.llm.base import ConfigError
from pld.llm.fan_out import fan_out
from pld.llm.json_reply import loads_reply
from pld.llm.registry import default_concurrency, parse_model
from pld.llm.teacher_json import UnusableReply, ask_json
from pld.pipeline.estimate import Planned
from pld.pipeline.runs import ProgressCallback, Run, stage_run
from pld.tasks.store import TaskInfo, task_info
from pld.workspace import Workspace, dumps, loads, now

STAGE = "extract"
OK, FAILED = "ok", "failed"
MAX_TOKENS = 400

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"reasoning": {"type": "string"}, "rule": {"type": "string"}},
    "required": ["reasoning", "rule"],
    "additionalProperties": False,
}


FLAGS: dict[str, str] = {
    "restates_label": "the rule has no condition (no if/when/unless/because/that... word) or "
                      "fewer than two words besides the label and filler words",
    "no_label": "the rule names none of the task's labels",
    "wrong_label": "the rule names labels, but not the example's gold label",
    "copies_example": "the rule copies 5 or more consecutive words from the example "
                      "(likely names an entity or is not generalised)",
    "names_option": "a multiple-choice rule names an option letter, which says nothing about "
                    "another question",
}

# Words that introduce a condition; a rule without any of them is "label is X" in disguise.
_CONDITION_WORDS = frozenset({
    "if", "when", "whenever", "unless", "because", "where", "wherever", "while", "whether",
    "that", "which", "who", "whom", "whose", "with", "without", "since", "given", "provided",
    "once", "only",
})
# Words that carry no condition of their own in "If ..., then the label is X." style rules.
_FILLER_WORDS = frozenset({
    "the", "a", "an", "label", "labels", "labelled", "labeled", "is", "are", "be", "being",
    "should", "must", "then", "it", "its", "this", "text", "texts", "example", "examples",
    "sample", "input", "sentence", "answer", "class", "category", "classified", "classify",
    "as", "so", "therefore", "thus", "always", "of",
})
_COPY_SPAN = 5


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


# -- parsing and flags --------------------------------------------------------------------------

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


def _norm(s: str) -> str:
    return re.sub(r"[\s_]+", " ", s.lower()).strip()


def _label_pattern(label: str) -> re.Pattern[str]:
    return re.compile(rf"(?<![\w-]){re.escape(_norm(label))}(?![\w-])")


def labels_named(rule: str, labels: Iterable[str]) -> list[str]:
    """The labels a rule names as whole words (case- and ``_``/space-insensitive).

    Longer labels are matched first and blanked out, so a rule naming ``not_entailment`` does not
    also count as naming ``entailment``.
    """
    text = _norm(rule)
    found = []
    for label in sorted(labels, key=lambda lab: len(_norm(lab)), reverse=True):
        pattern = _label_pattern(label)
        if pattern.search(text):
            found.append(label)
            text = pattern.sub(" # ", text)
    return found


def names_option(rule: str, letters: Iterable[str]) -> bool:
    """Whether a rule names an option letter: "option B", "answer is (C)", "(D)", "'A'".

    Case-sensitive on the letter, so the article "a" is not taken for option A.
    """
    alt = "|".join(re.escape(x) for x in letters)
    pattern = (rf"(?:\b(?:[Oo]ption|[Aa]nswer|[Cc]hoice|[Ll]etter)\s+(?:is\s+)?\(?(?:{alt})\)?"
               rf"|\((?:{alt})\)|[\"'](?:{alt})[\"'])(?![\w-])")
    return re.search(pattern, rule) is not None


def _lacks_condition(rule: str, labels: list[str]) -> bool:
    without_labels = _norm(rule)
    for label in sorted(labels, key=lambda lab: len(_norm(lab)), reverse=True):
        without_labels = _label_pattern(label).sub(" ", without_labels)
    words = re.findall(r"[^\W_]+(?:['-][^\W_]+)*", without_labels)
    content = [w for w in words if w not in _FILLER_WORDS and w not in _CONDITION_WORDS]
    return not any(w in _CONDITION_WORDS for w in words) or len(content) < 2


def flag_rule(rule: str, gold: str, labels: list[str], example_text: str,
              shape: str = "single") -> list[str]:
    """Heuristic warnings for one rule (names from :data:`FLAGS`), in a fixed order.

    A multiple-choice rule says how to choose an option rather than naming the gold letter, so
    it is checked for naming a letter instead of for naming the gold label.
    """
    flags = []
    if _lacks_condition(rule, [] if shape == "multiple-choice" else labels):
        flags.append("restates_label")
    if shape == "multiple-choice":
        if names_option(rule, labels):
            flags.append("names_option")
    else:
        named = labels_named(rule, labels)
        if not named:
            flags.append("no_label")
        elif gold not in named:
            flags.append("wrong_label")
    if _copies_span(rule, example_text, _COPY_SPAN):
        flags.append("copies_example")
    return flags


def _copies_span(rule: str, text: str, n: int) -> bool:
    def grams(s: str) -> set[tuple[str, ...]]:
        tokens = re.findall(r"\w+", s.lower())
        return {tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)}

    return bool(grams(rule) & grams(text))


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
    on_progress: ProgressCallback | None = None,
) -> ExtractSummary:
    """Write one micro-instruction per example of ``task``'s ``split``, asking ``teacher``.

    ``limit`` considers only the first N examples (by id). ``concurrency`` is the number of teacher
    calls in flight (default: 1 for local models, 8 for remote ones). Examples that failed before
    are left as they are unless ``retry_failed``, which asks them again bypassing the cache (a
    cached bad reply would only fail again). Raises :class:`BadInput` for an unknown task, model
    string or option, :class:`NotReady` when the split is empty.
    """
    info = task_info(ws, task)
    try:
        if concurrency is None:
            concurrency = default_concurrency(teacher)
        else:
            parse_model(teacher)
    except ConfigError as err:
        raise BadInput(str(err)) from err
    if concurrency < 1:
        raise BadInput(f"concurrency must be at least 1, got {concurrency}")
    if limit is not None and limit < 1:
        raise BadInput(f"limit must be at least 1, got {limit}")
    todo = _Todo(ws, task, teacher, split, limit, retry_failed)
    total, skipped, failed_before = todo.counts()
    params = {"teacher": teacher, "split": split, "limit": limit, "concurrency": concurrency,
              "retry_failed": retry_failed}
    with stage_run(ws, task, STAGE, params, on_progress) as run:
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


# -- reading rules back -------------------------------------------------------------------------

ClusterFilter = tuple[int, int | None]
"""(clustering id, cluster id) for :func:`list_rules`; a cluster id of None means its noise."""


def _where(task: str, status: str | None, label: str | None, flagged: bool | str | None,
           search: str | None, teacher: str | None,
           cluster: ClusterFilter | None = None) -> tuple[str, list[Any]]:
    clauses, args = ["m.task = ?"], [task]
    if cluster is not None:
        # A subquery on cluster_members (primary key clustering_id, rule_id), so paging and
        # counting stay in SQL. Rules outside the clustering (failed ones) match no cluster.
        clustering_id, cluster_id = cluster
        member = "cm.cluster_id IS NULL" if cluster_id is None else "cm.cluster_id = ?"
        clauses.append("m.id IN (SELECT cm.rule_id FROM cluster_members cm "
                       f"WHERE cm.clustering_id = ? AND {member})")
        args += [clustering_id] if cluster_id is None else [clustering_id, cluster_id]
    if status is not None:
        clauses.append("m.status = ?")
        args.append(status)
    if label is not None:
        clauses.append("m.label = ?")
        args.append(label)
    if teacher is not None:
        clauses.append("m.teacher = ?")
        args.append(teacher)
    if flagged is True:
        clauses.append("m.flags IS NOT NULL AND m.flags != '[]'")
    elif flagged is False:
        clauses.append("(m.flags IS NULL OR m.flags = '[]')")
    elif isinstance(flagged, str):
        clauses.append("EXISTS (SELECT 1 FROM json_each(m.flags) WHERE json_each.value = ?)")
        args.append(flagged)
    if search:
        like = "%" + search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        clauses.append("(m.rule LIKE ? ESCAPE '\\' OR m.reasoning LIKE ? ESCAPE '\\' "
                       "OR m.error LIKE ? ESCAPE '\\')")
        args += [like, like, like]
    return " AND ".join(clauses), args


def list_rules(
    ws: Workspace,
    task: str,
    *,
    status: str | None = None,
    label: str | None = None,
    flagged: bool | str | None = None,
    search: str | None = None,
    teacher: str | None = None,
    cluster: ClusterFilter | None = None,
    limit: int = 50,
    offset: int = 0,
) -> list[dict[str, Any]]:
    """One page of a task's micro-instructions in example order, with their example's text.

    ``flagged``: True = any flag, False = none, a flag name = that flag. ``search`` matches rule,
    reasoning or error text (case-insensitive substring). ``cluster``: only the members of
    ``(clustering_id, cluster_id)``, or that clustering's noise when ``cluster_id`` is None.
    Paging is done in SQL.
    """
    where, args = _where(task, status, label, flagged, search, teacher, cluster)
    rows = ws.query(
        "SELECT m.*, e.ext_id, e.split, e.text AS example_text FROM micro_instructions m "
        f"JOIN examples e ON e.id = m.example_id WHERE {where} "
        "ORDER BY m.example_id, m.id LIMIT ? OFFSET ?",
        [*args, limit, offset],
    )
    for row in rows:
        row["flags"] = loads(row["flags"], [])
    return rows


def count_rules(
    ws: Workspace,
    task: str,
    *,
    status: str | None = None,
    label: str | None = None,
    flagged: bool | str | None = None,
    search: str | None = None,
    teacher: str | None = None,
    cluster: ClusterFilter | None = None,
) -> int:
    """How many micro-instructions :func:`list_rules` would page through with these filters."""
    where, args = _where(task, status, label, flagged, search, teacher, cluster)
    return int(ws.query(f"SELECT count(*) AS n FROM micro_instructions m WHERE {where}",
                        args)[0]["n"])


def get_rule(ws: Workspace, rule_id: int) -> dict[str, Any]:
    """One micro-instruction with its source ``example`` and the raw teacher ``call`` joined.

    ``call`` is the ``llm_calls`` row that produced the stored outcome (messages and params
    decoded, ``system`` text restored), or None when there was none. When that row is a cache
    hit, ``call["answered_by"]`` is the row whose answer it served (with its batch id, for an
    answer from a provider batch).
    """
    rows = ws.query("SELECT * FROM micro_instructions WHERE id = ?", [rule_id])
    if not rows:
        raise BadInput(f"rule {rule_id} not found in {ws.path}")
    rule = rows[0]
    rule["flags"] = loads(rule["flags"], [])
    example = ws.query("SELECT * FROM examples WHERE id = ?", [rule["example_id"]])[0]
    example["meta"] = loads(example["meta"], {})
    rule["example"] = example
    rule["call"] = None
    if rule["call_id"] is not None:
        call = ws.query(
            "SELECT c.*, t.text AS system FROM llm_calls c "
            "LEFT JOIN texts t ON t.sha256 = c.system_sha256 WHERE c.id = ?", [rule["call_id"]])
        if call:
            call[0]["messages"] = loads(call[0]["messages"], [])
            call[0]["params"] = loads(call[0]["params"], {})
            call[0]["answered_by"] = (calls.answered_by(ws, call[0]["cache_key"])
                                      if call[0]["cache_hit"] else None)
            rule["call"] = call[0]
    return rule
