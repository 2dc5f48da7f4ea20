"""A user's uploaded CSV/JSONL file: peek at its columns, then load it as a custom task.

The app receives bytes, while :func:`pld.tasks.load_custom` validates and loads a file. The
bytes are written under a temporary folder with the uploaded file's own name, so the task name
defaults to its stem and error messages name the file the user knows (the temporary folder is
removed from them).
"""

from __future__ import annotations

import csv
import io
import re
import tempfile
from pathlib import Path
from typing import Any

from pld.errors import BadInput
from pld.tasks import load_custom
from pld.tasks.custom import CSV_EXTS, JSONL_EXTS, decode_text, jsonl_record, task_name_for
from pld.workspace import Workspace

SUPPORTED = tuple(e.lstrip(".") for e in (*CSV_EXTS, *JSONL_EXTS))
# Rows :func:`peek` reads to guess the column mapping from (the preview shows the first few).
SAMPLE_ROWS = 500


def _safe_name(filename: str) -> str:
    name = Path(filename or "upload").name
    return re.sub(r"[^\w.() -]+", "_", name).strip() or "upload"


def peek(filename: str, data: bytes, limit: int = 5) -> tuple[list[str], list[dict[str, Any]]]:
    """The file's column names and its first ``limit`` rows, for mapping columns and a preview.

    Only a first look: the full validation happens in :func:`load_custom_upload`. Raises
    :class:`BadInput` (naming the file and line) when even this much cannot be read.
    """
    name = _safe_name(filename)
    ext = Path(name).suffix.lower()
    if ext not in CSV_EXTS and ext not in JSONL_EXTS:
        raise BadInput(f"{name}: unsupported file type {ext or '(none)'!r}; use "
                       + ", ".join("." + s for s in SUPPORTED))
    text = decode_text(name, data)
    if not text.strip():
        raise BadInput(f"{name}: empty file")
    if ext in JSONL_EXTS:
        columns: list[str] = []
        rows: list[dict[str, Any]] = []
        for n, line in enumerate(text.split("\n"), 1):
            if not line.strip():
                continue
            rec = jsonl_record(name, n, line)
            columns += [k for k in rec if k not in columns]
            rows.append(rec)
            if len(rows) >= limit:
                break
        return columns, rows
    first = next((ln for ln in text.split("\n") if ln.strip()), "")
    delimiter = CSV_EXTS[ext] or max((",", ";", "\t"), key=lambda d: len(first.split(d)))
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = next((row for row in reader if any(c.strip() for c in row)), None)
        if header is None:
            raise BadInput(f"{name}: empty file (no header)")
        header = [c.strip() for c in header]
        rows = []
        for row in reader:
            if any(c.strip() for c in row):
                rows.append(dict(zip(header, row, strict=False)))
            if len(rows) >= limit:
                break
    except csv.Error as e:
        raise BadInput(f"{name} line {reader.line_num}: malformed CSV ({e})") from None
    return header, rows


def load_custom_upload(ws: Workspace, filename: str, data: bytes, *, name: str | None = None,
                       **opts: Any) -> tuple[str, dict[str, int]]:
    """Validate uploaded bytes and load them as a custom task; return (task name, split counts).

    ``opts`` are those of :func:`pld.tasks.load_custom` (text_column, label_column, id_column,
    description, n_train, n_val, n_test, seed, shape, who). Nothing is written unless the whole
    file is valid; a :class:`BadInput` names the uploaded file, the line and the field.
    """
    safe = _safe_name(filename)
    with tempfile.TemporaryDirectory(prefix="pld-upload-") as tmp:
        path = Path(tmp) / safe
        path.write_bytes(data)
        try:
            counts = load_custom(ws, path, name=name or None, **opts)
        except BadInput as e:
            message = str(e).replace(str(path.resolve()), safe).replace(str(path), safe)
            raise BadInput(message) from None
    return name or task_name_for(safe), counts
