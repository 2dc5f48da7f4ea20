"""CSV downloads: a text cell a spreadsheet would run as a formula is written as text (OWASP
"CSV injection": a single quote in front, and the field quoted); numbers stay numbers."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest

from pld.csv_export import csv_text, neutralised

HYPERLINK = '=HYPERLINK("http://x","y")'


@pytest.mark.parametrize("cell", ["=1+1", "+1", "-2+3", "@SUM(A1)", "\t=x", "\r=x",
                                  "-1", HYPERLINK])
def test_formula_cells_get_a_quote(cell: str) -> None:
    assert neutralised(cell) == "'" + cell


def test_other_cells_are_kept() -> None:
    assert [neutralised(v) for v in ("a=b", " =x", "", -1.5, 3, None, float("nan"))] == [
        "a=b", " =x", "", -1.5, 3, "", ""]


def test_csv_text_neutralises_header_and_rows() -> None:
    text = csv_text(["id", "=label"], [[1, "-1 day"], [2, 'say "hi", then =go']])
    assert list(csv.reader(io.StringIO(text))) == [
        ["id", "'=label"], ["1", "'-1 day"], ["2", 'say "hi", then =go']]


def test_every_text_field_is_quoted_and_a_number_is_not() -> None:
    # A text cell is one quoted field whatever it holds: the quote, not the spreadsheet's
    # guess, says where it ends. A number is written bare so it stays a number.
    text = csv_text(["cell", "score"], [[HYPERLINK, -0.25], ["\tx", 3], ["+1", -2],
                                        ["\r=1", None]])
    assert text == ('"cell","score"\n'
                    '"\'=HYPERLINK(""http://x"",""y"")",-0.25\n'
                    '"\'\tx",3\n'
                    '"\'+1",-2\n'
                    '"\'\r=1",""\n')


def test_a_numeric_column_stays_numeric_and_a_number_written_as_text_does_not() -> None:
    # Decided: only a number-typed cell is trusted to be a number. Negative scores and biases
    # (numpy values, as a pandas frame yields them) are kept bare; the same digits in a text
    # column are neutralised, since "-1" and "-1+1" are both text to us.
    rows = list(csv.reader(io.StringIO(csv_text(
        ["bias", "count", "as text"],
        [[np.float64(-0.5), np.int64(-2), "-0.5"], [np.float64(0.25), np.int64(7), "7"]]))))
    assert rows == [["bias", "count", "as text"], ["-0.5", "-2", "'-0.5"], ["0.25", "7", "7"]]
