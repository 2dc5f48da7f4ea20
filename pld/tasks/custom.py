"""A user's own labelled data (CSV or JSONL) as a task, validated before anything is stored.

The whole file is read and checked first; any problem raises :class:`BadInput` with one line
naming the file, the line and the field, and nothing is written. Checks: supported extension
(.csv, .tsv, .jsonl, .ndjson), UTF-8 text, not empty, the text/label/id columns exist, no empty
text or label, no duplicate ids, valid JSON objects (JSONL), rows as wide as the header (CSV),
at least two labels, and every label seen at least twice (a label seen once cannot be both
learnt and evaluated, and is usually a typo; most labels seen once mean the label column is
the wrong one, and the error says so). Columns not given can be guessed from the content
(:func:`guess_file_columns`).

Default split sizes are fractions of the file, 50% / 20% / 30%, each capped at the benchmark
defaults (60 / 40 / 100) so that a large file stays practical on the local CPU model; pass
explicit counts, fractions or "all" to change that.
"""

from __future__ import annotations

import csv
import io
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from pld.errors import BadInput
from pld.tasks.base import BENCHMARK_SIZES, DataDir, Item, Pool, Size, Task, TaskStatus, pool_info
from pld.tasks.columns import ColumnChoice, guess_columns
from pld.untrusted_json import UntrustedJSONError, loads_untrusted

CSV_EXTS = {".csv": None, ".tsv": "\t"}
JSONL_EXTS = (".jsonl", ".ndjson")
CUSTOM_SIZES: dict[str, Size] = {"train": 0.5, "val": 0.2, "test": 0.3}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class Row:
    """One validated row: where it was, its id, text, label and the other fields."""

    line: int
    ext_id: str
    text: str
    label: str
    extra: dict[str, Any]


def _decode(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError as e:
        raise BadInput(f"{path}: cannot be read ({e.strerror or e})") from None
    return decode_text(str(path), data)


def decode_text(name: str, data: bytes) -> str:
    """The text of a file's bytes (UTF-8, a byte-order mark dropped); :class:`BadInput` naming
    ``name``, the line and the byte when they are not UTF-8."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise BadInput(f"{name} line {line}: not UTF-8 text (byte 0x{data[e.start]:02x} at "
                       f"offset {e.start}); save the file as UTF-8") from None


def _value(path: Path, line: int, field: str, raw: Any) -> str:
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        raise BadInput(f"{path} line {line}: field {field!r} is empty")
    if isinstance(raw, bool) or not isinstance(raw, (str, int, float)):
        raise BadInput(f"{path} line {line}: field {field!r} must be a string, "
                       f"got {type(raw).__name__}")
    return str(raw).strip()


def _csv_records(path: Path, text: str, delimiter: str | None,
                 wanted: list[str]) -> list[tuple[int, dict[str, Any]]]:
    first = text.split("\n", 1)[0]
    if delimiter is None:
        # Excel in many locales writes ';'; take the delimiter under which the header has the
        # requested columns (and the most of them: none may be requested), else the comma.
        fits = [d for d in (",", ";", "\t") if set(wanted) <= {c.strip() for c in first.split(d)}]
        delimiter = max(fits, key=lambda d: len(first.split(d)), default=",")
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = next(reader, None)
        while header is not None and not any(c.strip() for c in header):
            header = next(reader, None)
        if header is None:
            raise BadInput(f"{path}: empty file (no header, no rows)")
        header = [c.strip() for c in header]
        dupes = sorted(c for c, n in Counter(header).items() if n > 1)
        if dupes:
            raise BadInput(f"{path} line {reader.line_num}: column {dupes[0]!r} appears twice "
                           "in the header")
        for col in wanted:
            if col not in header:
                raise BadInput(f"{path}: no column {col!r} in the header "
                               f"(columns: {', '.join(header)})")
        out = []
        start = reader.line_num + 1
        for row in reader:
            if not any(c.strip() for c in row):
                start = reader.line_num + 1
                continue
            if len(row) != len(header):
                raise BadInput(f"{path} line {start}: {len(row)} fields, the header has "
                               f"{len(header)} (check quoting and the delimiter)")
            out.append((start, dict(zip(header, row, strict=True))))
            start = reader.line_num + 1
    except csv.Error as e:
        raise BadInput(f"{path} line {reader.line_num}: malformed CSV ({e})") from None
    return out


def jsonl_record(name: str | Path, n: int, line: str) -> dict[str, Any]:
    """Line ``n`` of a JSONL file as a dict; :class:`BadInput` naming the file and line when it
    is not one JSON object (too deeply nested and over-long numbers included)."""
    try:
        rec = loads_untrusted(line)
    except UntrustedJSONError as e:
        col = f" at column {e.column}" if e.column is not None else ""
        raise BadInput(f"{name} line {n}: malformed JSON ({e.reason}{col})") from None
    if not isinstance(rec, dict):
        raise BadInput(f"{name} line {n}: expected a JSON object, got {type(rec).__name__}")
    return rec


def _jsonl_records(path: Path, text: str, wanted: list[str]) -> list[tuple[int, dict[str, Any]]]:
    out = []
    for n, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        rec = jsonl_record(path, n, line)
        for col in wanted:
            if col not in rec:
                raise BadInput(f"{path} line {n}: field {col!r} is missing "
                               f"(fields: {', '.join(rec)})")
        out.append((n, rec))
    return out


DEFAULT_ID_COLUMN = "id"


def read_rows(path: str | Path, *, text_column: str = "text", label_column: str = "label",
              id_column: str | None = None) -> list[Row]:
    """Read and validate a CSV/JSONL file; BadInput naming file, line and field on any problem.

    Without ``id_column``, a column named ``id`` is the id column when the file has one (so a
    duplicate id is refused); otherwise rows get ids ``row-1``, ``row-2``, ...
    """
    path = Path(path)
    if text_column == label_column:
        raise BadInput(f"{path}: the text and the label are both column {text_column!r}; "
                       "choose two different columns")
    wanted = [text_column, label_column] + ([id_column] if id_column else [])
    records = _records(path, wanted)
    if id_column is None and any(DEFAULT_ID_COLUMN in rec for _, rec in records):
        # An "id" column is the id, as "text" and "label" are the text and label: loading it
        # as row-N would accept duplicate ids silently.
        id_column = DEFAULT_ID_COLUMN
        for line, rec in records:
            if id_column not in rec:
                raise BadInput(f"{path} line {line}: field {id_column!r} is missing (other rows "
                               f"have one; give every row an id, or rename the column)")
        wanted.append(id_column)
    rows: list[Row] = []
    seen_ids: dict[str, int] = {}
    for i, (line, rec) in enumerate(records, 1):
        text_v = _value(path, line, text_column, rec[text_column])
        label_v = _value(path, line, label_column, rec[label_column])
        if id_column:
            ext_id = _value(path, line, id_column, rec[id_column])
            if ext_id in seen_ids:
                raise BadInput(f"{path} line {line}: field {id_column!r}: duplicate id {ext_id!r} "
                               f"(first on line {seen_ids[ext_id]})")
            seen_ids[ext_id] = line
        else:
            ext_id = f"row-{i}"
        extra = {k: v for k, v in rec.items() if k not in wanted}
        rows.append(Row(line, ext_id, text_v, label_v, extra))
    _check_labels(path, label_column, rows)
    return rows


def _shown(value: str, limit: int = 60) -> str:
    return value if len(value) <= limit else value[:limit - 1] + "…"


def _check_labels(path: Path, column: str, rows: list[Row]) -> None:
    """Every label seen twice, at least two labels; errors name the column the labels came
    from, so a wrong column mapping shows as one."""
    counts = Counter(r.label for r in rows)
    once = [r for r in rows if counts[r.label] == 1]
    if len(once) * 2 > len(rows):
        raise BadInput(f"{path}: {len(once)} of {len(rows)} values of the label column "
                       f"{column!r} appear only once (line {once[0].line}: "
                       f"{_shown(once[0].label)!r}): {column!r} does not look like a label "
                       "column; choose a column of a few values, each repeated")
    if once:
        r = once[0]
        raise BadInput(f"{path} line {r.line}: field {column!r} (the label column): label "
                       f"{_shown(r.label)!r} appears only once; every label needs at least 2 "
                       "examples (typo?)")
    if len(counts) < 2:
        raise BadInput(f"{path}: the label column {column!r} has only one value "
                       f"({_shown(next(iter(counts)))!r}); a classification task needs at "
                       "least two labels")


def _records(path: Path, wanted: list[str]) -> list[tuple[int, dict[str, Any]]]:
    """Every record of a CSV/JSONL file with its line, the ``wanted`` columns checked present."""
    ext = path.suffix.lower()
    if ext not in CSV_EXTS and ext not in JSONL_EXTS:
        raise BadInput(f"{path}: unsupported file type {ext or '(none)'!r}; use .csv, .tsv, "
                       ".jsonl or .ndjson")
    if not path.is_file():
        raise BadInput(f"{path}: file not found")
    text = _decode(path)
    if not text.strip():
        raise BadInput(f"{path}: empty file")
    if ext in CSV_EXTS:
        records = _csv_records(path, text, CSV_EXTS[ext], wanted)
    else:
        records = _jsonl_records(path, text, wanted)
    if not records:
        raise BadInput(f"{path}: empty file (no data rows)")
    return records


def guess_file_columns(path: str | Path, *, text_column: str | None = None,
                       label_column: str | None = None,
                       id_column: str | None = None) -> ColumnChoice:
    """The text, label and id columns of a CSV/JSONL file, the ones not given guessed from
    every row's values (:func:`pld.tasks.columns.guess_columns`); :class:`BadInput` as
    :func:`read_rows` words it when the file cannot be read."""
    path = Path(path)
    records = _records(path, [c for c in (text_column, label_column, id_column) if c])
    columns = list(dict.fromkeys(k for _, rec in records for k in rec))
    return guess_columns(columns, [rec for _, rec in records], source=str(path),
                         text_column=text_column, label_column=label_column,
                         id_column=id_column)


def task_name_for(path: str | Path) -> str:
    """A default task name from a file name: ``Alerts Q3.csv`` -> ``alerts-q3``."""
    stem = re.sub(r"[^a-z0-9_.-]+", "-", Path(path).stem.lower()).strip("-.")
    return stem[:64] or "custom"


class CustomTask(Task):
    """A task read from a user's CSV/JSONL file (``load custom --file PATH``)."""

    name = "custom"
    kind = "custom"
    description = (
        "Your own labelled data: a CSV or JSONL file with a text column and a label column "
        "(names configurable, optional id column). Load it with: "
        "python -m pld load custom --file PATH [--name NAME]."
    )
    default_sizes: ClassVar[Mapping[str, Size]] = CUSTOM_SIZES
    default_caps: ClassVar[Mapping[str, int] | None] = {
        k: int(v) for k, v in BENCHMARK_SIZES.items() if isinstance(v, int)}

    def __init__(self, path: str | Path | None = None, *, name: str | None = None,
                 text_column: str = "text", label_column: str = "label",
                 id_column: str | None = None, description: str | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self.text_column, self.label_column, self.id_column = text_column, label_column, id_column
        if path is not None:
            task_name = name or task_name_for(path)
            if not _NAME.match(task_name):
                raise BadInput(f"--name {task_name!r}: use letters, digits, '-', '_' or '.' "
                               "(at most 64)")
            self.name = task_name  # type: ignore[misc]  # an instance names its own task
        self._rows: list[Row] | None = None
        self.labels: list[str] = []
        self._description = description

    @property
    def task_description(self) -> str:
        """The framing stored with the task: the user's, or one naming the file and labels."""
        if self._description:
            return self._description
        if self.path is None:
            return self.description
        return (f"Custom task from {self.path.name}: classify each text as one of "
                f"{', '.join(self.labels)}.")

    def rows(self) -> list[Row]:
        """The validated rows (read once)."""
        if self.path is None:
            raise BadInput("custom: needs a file: python -m pld load custom --file PATH")
        if self._rows is None:
            self._rows = read_rows(self.path, text_column=self.text_column,
                                   label_column=self.label_column, id_column=self.id_column)
            self.labels = sorted({r.label for r in self._rows})
        return self._rows

    def pools(self, data_dir: DataDir = None) -> list[Pool]:
        """One pool: every row of the file (``data_dir`` is not used)."""
        rows = self.rows()
        items = [Item(r.ext_id, r.label, {"text": r.text},
                      {"line": r.line, **({"fields": r.extra} if r.extra else {})})
                 for r in rows]
        return [Pool(("train", "val", "test"), items, (str(self.path),))]

    def status(self, data_dir: DataDir = None) -> TaskStatus:
        """Without a file: says that --file is needed. With one: its rows and labels."""
        if self.path is None:
            return TaskStatus(self.name, False, False, notes=(
                "needs --file PATH: python -m pld load custom --file PATH [--name NAME] "
                "[--text-column C] [--label-column L] (CSV or JSONL; columns not given are "
                "guessed from the content)"))
        try:
            pools = [pool_info(p) for p in self.pools()]
        except BadInput as e:
            return TaskStatus(self.name, False, False, files=[str(self.path)], notes=str(e))
        return TaskStatus(self.name, True, True, files=[str(self.path)], pools=pools,
                          notes=f"{pools[0].size} rows, labels: {', '.join(self.labels)}")

    def params(self) -> dict[str, Any]:
        """The file and the columns read."""
        return {"file": str(self.path), "text_column": self.text_column,
                "label_column": self.label_column, "id_column": self.id_column}

    def render(self, item: Item) -> str:
        """The text as given (surrounding whitespace removed)."""
        return str(item.fields["text"])
