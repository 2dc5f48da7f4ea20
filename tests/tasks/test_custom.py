"""Custom CSV/JSONL tasks: loading, splits, and one specific error per kind of bad file."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from pld.errors import BadInput
from pld.tasks import load_custom, load_task
from pld.tasks.custom import CustomTask, guess_file_columns, read_rows, task_name_for
from pld.tasks.store import examples, task_info
from pld.workspace import Workspace

LABELS = ["alert", "ok", "review"]


def _rows(n: int = 30) -> list[dict[str, Any]]:
    return [{"id": f"t{i}", "text": f"Transaction note number {i} about payment {i * 7}",
             "label": LABELS[i % 3], "desk": "north" if i % 2 else "south"} for i in range(n)]


def _csv(path: Path, rows: list[dict[str, Any]], sep: str = ",") -> Path:
    cols = list(rows[0])
    lines = [sep.join(cols)] + [sep.join(str(r[c]) for c in cols) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _snapshot(ws: Workspace) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    return (ws.query("SELECT * FROM tasks ORDER BY name"),
            ws.query("SELECT * FROM examples ORDER BY id"))


def test_csv_loads_with_stratified_default_splits(ws: Workspace, tmp_path: Path) -> None:
    path = _csv(tmp_path / "Alerts Q3.csv", _rows(30))
    counts = load_custom(ws, path, id_column="id")
    assert counts == {"train": 15, "val": 6, "test": 9}
    info = task_info(ws, "alerts-q3")
    assert info.kind == "custom" and info.labels == LABELS
    assert "alerts" in info.description.lower() or "Alerts Q3.csv" in info.description
    rows = examples(ws, "alerts-q3")
    assert {r["ext_id"] for r in rows} <= {f"t{i}" for i in range(30)}
    for split, n in (("train", 5), ("val", 2), ("test", 3)):
        assert Counter(r["label"] for r in rows if r["split"] == split) == {k: n for k in LABELS}
    r = next(r for r in rows if r["ext_id"] == "t4")
    assert r["text"] == "Transaction note number 4 about payment 28"
    assert json.loads(r["meta"]) == {"line": 6, "fields": {"desk": "south"}}
    # Loading the same file again changes nothing.
    assert load_custom(ws, path, id_column="id") == counts
    assert len(examples(ws, "alerts-q3")) == 30


def test_sizes_seed_columns_and_formats(ws: Workspace, tmp_path: Path) -> None:
    rows = [{"msg": r["text"], "cls": r["label"]} for r in _rows(60)]
    semi = _csv(tmp_path / "semi.csv", rows, sep=";")
    assert load_custom(ws, semi, name="semi", text_column="msg", label_column="cls",
                       n_train=12, n_val=0.1, n_test="all") == {"train": 12, "val": 6, "test": 42}
    tsv = _csv(tmp_path / "tab.tsv", rows, sep="\t")
    a = CustomTask(tsv, text_column="msg", label_column="cls").load_splits(seed=0)
    b = CustomTask(tsv, text_column="msg", label_column="cls").load_splits(seed=0)
    c = CustomTask(tsv, text_column="msg", label_column="cls").load_splits(seed=9)
    assert [(e.ext_id, e.split) for e in a] == [(e.ext_id, e.split) for e in b]
    assert [(e.ext_id, e.split) for e in a] != [(e.ext_id, e.split) for e in c]
    assert {e.ext_id for e in a} <= {f"row-{i}" for i in range(1, 61)}
    jl = _jsonl(tmp_path / "notes.jsonl", [{"text": r["msg"], "label": r["cls"], "n": i}
                                           for i, r in enumerate(rows)])
    got = CustomTask(jl).load_splits(n_train=30, n_val=15, n_test=15, seed=0)
    assert Counter(e.split for e in got) == {"train": 30, "val": 15, "test": 15}
    assert all(e.meta["fields"]["n"] == e.meta["line"] - 1 for e in got)


def test_default_sizes_are_capped_for_big_files(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "big.jsonl", _rows(600))
    got = CustomTask(path).load_splits(seed=0)
    assert Counter(e.split for e in got) == {"train": 60, "val": 40, "test": 100}


def test_names(ws: Workspace, tmp_path: Path) -> None:
    assert task_name_for("My Alerts (v2).CSV") == "my-alerts-v2"
    path = _csv(tmp_path / "demo.csv", _rows(9))
    with pytest.raises(BadInput, match="built-in task"):
        load_custom(ws, path)
    with pytest.raises(BadInput, match="built-in task"):
        load_custom(ws, _csv(tmp_path / "x.csv", _rows(9)), name="logiqa")
    with pytest.raises(BadInput, match="--name"):
        load_custom(ws, path, name="bad name!")
    with pytest.raises(BadInput, match="--file"):
        load_task(ws, "custom")


BAD_FILES: list[tuple[str, str, bytes | None, dict[str, Any], str]] = [
    ("missing-column", "x.csv", b"text,category\nhello,a\nbye,a\n", {},
     r"x\.csv: no column 'label' in the header \(columns: text, category\)"),
    ("missing-field-jsonl", "x.jsonl", b'{"text": "a", "label": "p"}\n{"text": "b"}\n', {},
     r"x\.jsonl line 2: field 'label' is missing"),
    ("empty-text", "x.csv", b"text,label\nhello,a\n  ,b\nbye,a\nfoo,b\n", {},
     r"x\.csv line 3: field 'text' is empty"),
    ("empty-label-jsonl", "x.jsonl",
     b'{"text": "a", "label": "p"}\n{"text": "b", "label": null}\n', {},
     r"x\.jsonl line 2: field 'label' is empty"),
    ("label-once", "x.csv", b"text,label\na,p\nb,p\nc,q\nd,q\ne,qq\n", {},
     r"x\.csv line 6: field 'label' \(the label column\): label 'qq' appears only once"),
    ("single-label", "x.csv", b"text,label\na,p\nb,p\n", {},
     r"x\.csv: the label column 'label' has only one value \('p'\)"),
    ("not-a-label-column", "x.csv", b"text,label\na,p\nb,q\nc,r\nd,s\ne,s\n", {},
     r"x\.csv: 3 of 5 values of the label column 'label' appear only once \(line 2: 'p'\): "
     r"'label' does not look like a label column"),
    ("same-text-and-label", "x.csv", b"text,label\na,p\nb,p\n", {"label_column": "text"},
     r"x\.csv: the text and the label are both column 'text'"),
    ("bad-encoding", "x.csv", "text,label\na,p\nb,p\ncaf\u00e9,q\nd,q\n".encode("latin-1"), {},
     r"x\.csv line 4: not UTF-8 text \(byte 0xe9"),
    ("duplicate-id", "x.csv", b"id,text,label\n1,a,p\n2,b,p\n3,c,q\n2,d,q\n", {"id_column": "id"},
     r"x\.csv line 5: field 'id': duplicate id '2' \(first on line 3\)"),
    ("missing-id-column", "x.csv", b"text,label\na,p\n", {"id_column": "id"},
     r"x\.csv: no column 'id' in the header"),
    ("unsupported-extension", "x.xlsx", b"PK\x03\x04", {},
     r"x\.xlsx: unsupported file type '\.xlsx'"),
    ("empty-file", "x.jsonl", b"", {}, r"x\.jsonl: empty file"),
    ("header-only", "x.csv", b"text,label\n", {}, r"x\.csv: empty file \(no data rows\)"),
    ("malformed-json", "x.jsonl", b'{"text": "a", "label": "p"}\n{"text": "b", "label": \n', {},
     r"x\.jsonl line 2: malformed JSON"),
    ("json-not-object", "x.jsonl", b'{"text": "a", "label": "p"}\n["b", "p"]\n', {},
     r"x\.jsonl line 2: expected a JSON object, got list"),
    ("text-not-string", "x.jsonl",
     b'{"text": "a", "label": "p"}\n{"text": {"x": 1}, "label": "p"}\n', {},
     r"x\.jsonl line 2: field 'text' must be a string, got dict"),
    ("ragged-csv", "x.csv", b"text,label\na,p\nb,p,extra\n", {},
     r"x\.csv line 3: 3 fields, the header has 2"),
    ("missing-file", "nope.csv", None, {}, r"nope\.csv: file not found"),
    # Before: RecursionError and ValueError escaped the JSON handler.
    ("deeply-nested-json", "x.jsonl",
     b'{"text": "a", "label": "p"}\n{"text": "b", "label": "p", "x": ' + b"[" * 100_000
     + b"]" * 100_000 + b"}\n", {}, r"x\.jsonl line 2: malformed JSON \(nested too deeply\)"),
    ("huge-integer-json", "x.jsonl",
     b'{"text": "a", "label": "p"}\n{"text": "b", "label": "p", "n": ' + b"9" * 5000 + b"}\n",
     {}, r"x\.jsonl line 2: malformed JSON \(Exceeds the limit \(4300 digits\)"),
    # Before: an "id" column was ignored unless named, so duplicate ids loaded as row-N.
    ("duplicate-id-by-default", "x.csv", b"id,text,label\n1,a,p\n2,b,p\n3,c,q\n2,d,q\n", {},
     r"x\.csv line 5: field 'id': duplicate id '2' \(first on line 3\)"),
    ("id-missing-on-a-jsonl-row", "x.jsonl",
     b'{"id": "1", "text": "a", "label": "p"}\n{"text": "b", "label": "p"}\n', {},
     r"x\.jsonl line 2: field 'id' is missing \(other rows have one"),
]


@pytest.mark.parametrize("case", BAD_FILES, ids=[c[0] for c in BAD_FILES])
def test_bad_file_gives_specific_error_and_changes_nothing(
    case: tuple[str, str, bytes | None, dict[str, Any], str], ws: Workspace, tmp_path: Path,
) -> None:
    _, name, content, kwargs, pattern = case
    load_custom(ws, _csv(tmp_path / "good.csv", _rows(12)), name="existing")
    before = _snapshot(ws)
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(BadInput, match=pattern) as e:
        load_custom(ws, path, name="incoming", **kwargs)
    assert "\n" not in str(e.value)
    assert _snapshot(ws) == before


def test_valid_rows_after_a_bad_row_are_not_imported(ws: Workspace, tmp_path: Path) -> None:
    rows: list[Any] = _rows(20)
    lines = [json.dumps(r) for r in rows]
    lines[15] = lines[15][:-3]
    path = tmp_path / "late.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(BadInput, match=r"late\.jsonl line 16: malformed JSON"):
        load_custom(ws, path)
    assert ws.query("SELECT count(*) AS n FROM examples")[0]["n"] == 0
    assert ws.query("SELECT count(*) AS n FROM tasks")[0]["n"] == 0


def test_reload_with_another_seed_is_refused(ws: Workspace, tmp_path: Path) -> None:
    path = _csv(tmp_path / "alerts.csv", _rows(30))
    load_custom(ws, path, seed=0)
    before = _snapshot(ws)
    with pytest.raises(BadInput, match="would change split"):
        load_custom(ws, path, seed=1)
    assert _snapshot(ws) == before


def test_read_rows_keeps_values_and_lines(tmp_path: Path) -> None:
    path = tmp_path / "q.csv"
    path.write_text('\ufefftext,label\n"multi\nline, quoted",a\nplain,a\n3,b\nx,b\n',
                    encoding="utf-8")
    rows = read_rows(path)
    assert [(r.line, r.text, r.label) for r in rows] == [
        (2, "multi\nline, quoted", "a"), (4, "plain", "a"), (5, "3", "b"), (6, "x", "b")]


def test_shape_is_kept_and_checked(ws: Workspace, tmp_path: Path, ws_path: Path) -> None:
    from tests.cli.test_contract import pld

    path = _csv(tmp_path / "pairs.csv", _rows(30))
    load_custom(ws, path, id_column="id", shape="pair", description="A note and a payment.")
    info = task_info(ws, "pairs")
    assert info.shape == "pair" and info.description == "A note and a payment."
    with pytest.raises(BadInput, match="--shape"):
        load_custom(ws, path, name="other", shape="triple")
    assert load_task(ws, "demo") and task_info(ws, "demo").shape == "single"

    # Without a description the command loads and says what the models will miss.
    r = pld("load", "custom", "--file", str(path), "--name", "blind", "--id-column", "id",
            ws=ws_path)
    assert r.returncode == 0, r.stderr
    assert "no description" in r.stderr and "python -m pld describe blind" in r.stderr
    bad = pld("load", "demo", "--shape", "pair", ws=ws_path)
    assert bad.returncode == 2 and "--shape" in bad.stderr


def test_guess_file_columns_reads_every_row_of_csv_and_jsonl(tmp_path: Path) -> None:
    rows = [{"ticket_id": f"T-{i}", "complaint": f"I was charged twice for order {i}, why?",
             "product_area": LABELS[i % 3]} for i in range(9)]
    semicolons = _csv(tmp_path / "tickets.csv", rows, sep=";")
    lines = _jsonl(tmp_path / "tickets.jsonl", rows)
    for path in (semicolons, lines):
        choice = guess_file_columns(path)
        assert (choice.text_column, choice.label_column, choice.id_column) == (
            "complaint", "product_area", "ticket_id"), path
        assert choice.reasons[1] == "label: product_area, 3 values"
    # A column given is checked as when loading.
    with pytest.raises(BadInput, match=r"no column 'category' in the header"):
        guess_file_columns(semicolons, label_column="category")
