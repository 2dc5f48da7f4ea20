"""CSV downloads: a text cell a spreadsheet would run as a formula is written as text."""

from __future__ import annotations

import csv
import io

import pytest

from pld.csv_export import csv_text, neutralised


@pytest.mark.parametrize("cell", ["=1+1", "+1", "-2+3", "@SUM(A1)", "\t=x", "\r=x",
                                  '=HYPERLINK("http://evil","x")'])
def test_formula_cells_get_a_quote(cell: str) -> None:
    assert neutralised(cell) == "'" + cell


def test_other_cells_are_kept() -> None:
    assert [neutralised(v) for v in ("a=b", " =x", "", -1.5, 3, None, float("nan"))] == [
        "a=b", " =x", "", -1.5, 3, "", ""]


def test_csv_text_neutralises_header_and_rows() -> None:
    text = csv_text(["id", "=label"], [[1, "-1 day"], [2, 'say "hi", then =go']])
    assert list(csv.reader(io.StringIO(text))) == [
        ["id", "'=label"], ["1", "'-1 day"], ["2", 'say "hi", then =go']]
