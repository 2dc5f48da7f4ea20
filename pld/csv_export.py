"""CSV files people download and open in a spreadsheet, safe from formula injection.

A spreadsheet runs a cell that begins with ``=``, ``+``, ``-`` or ``@`` (and, in some, a tab or
a carriage return) as a formula, so a text written by a model or an uploader could run one on
the analyst's machine (OWASP "CSV injection"). As OWASP advises, every text cell that begins so
is written with a single quote in front, which the spreadsheet shows as text, and every text
cell is quoted, so a separator or a quote inside it cannot start a new cell.

Numbers stay numbers: a number-typed cell (a negative score, a bias) is written bare, as no
formula can hide in it, and quoting it would turn it into text. A *text* cell is neutralised
even when it reads like a number (``"-1"``): whether a text is "just a number" is a guess an
attacker can aim at (``-1+1``), and the table it came from called it text.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Sequence

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def neutralised(value: object) -> object:
    """``value`` as a CSV cell: a text that a spreadsheet would run as a formula gets a ``'``
    in front; None (and a missing number, NaN) becomes an empty cell; anything else is kept."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def csv_text(header: Sequence[object], rows: Iterable[Sequence[object]]) -> str:
    """A CSV document of ``header`` and ``rows``, every cell (header included) neutralised and
    every cell but a number quoted."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n", quoting=csv.QUOTE_NONNUMERIC)
    writer.writerow([neutralised(h) for h in header])
    writer.writerows([neutralised(v) for v in row] for row in rows)
    return out.getvalue()
