"""Which columns of a user's file hold the text, the label and the id, guessed from the content.

Mapping columns by hand goes wrong quietly: a file ``ticket_id, complaint, product_area``
opened as text = ticket_id and label = complaint fails later with an error about labels. The
values say more than the order of the columns: the text is the column of long free text with
many different values, the label a column of a few values that repeat, the id a column of
unique short values. A header named ``text``, ``label`` or ``id`` only decides between columns
the content allows (or when none does). Columns given explicitly are kept as given.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pld.errors import BadInput

# Above this mean length a column of unique values reads as text, not as ids.
ID_MAX_LENGTH = 40


@dataclass(frozen=True)
class ColumnChoice:
    """The columns to read, with one reason per role ("label: product_area, 3 values")."""

    text_column: str
    label_column: str
    id_column: str | None
    reasons: tuple[str, str, str]  # text, label, id

    def as_dict(self) -> dict[str, Any]:
        """The choice and its reasons, for ``--json`` output."""
        return {"text": self.text_column, "label": self.label_column, "id": self.id_column,
                "reasons": list(self.reasons)}


@dataclass(frozen=True)
class _Stats:
    """What the values of one column look like."""

    name: str
    position: int
    filled: int          # rows with a non-empty value
    distinct: int
    mean_length: float
    spaced: float        # share of values with a space in them: free text has spaces
    scalar: bool         # every value a string or a number (no lists, objects, booleans)
    fractional: bool     # every value a number and some not whole: scores, not ids

    def hinted(self, role: str) -> bool:
        return self.name.strip().lower() == role


def _is_number(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


def _stats(name: str, position: int, rows: Sequence[Mapping[str, Any]]) -> _Stats:
    raw = [row.get(name) for row in rows]
    scalar = all(v is None or (isinstance(v, (str, int, float)) and not isinstance(v, bool))
                 for v in raw)
    values = [str(v).strip() for v in raw if v is not None and str(v).strip()]
    n = len(values) or 1
    numbers = [v for v in values if _is_number(v)]
    return _Stats(
        name=name, position=position, filled=len(values), distinct=len(set(values)),
        mean_length=sum(len(v) for v in values) / n,
        spaced=sum(" " in v for v in values) / n, scalar=scalar,
        fractional=bool(values) and len(numbers) == len(values)
        and any(not float(v).is_integer() for v in numbers))


def _text_reason(s: _Stats) -> str:
    return f"text: {s.name}, free text averaging {round(s.mean_length)} characters"


def _label_plausible(s: _Stats) -> bool:
    # A few values that repeat: on average each seen at least twice.
    return s.scalar and 2 <= s.distinct <= max(2, s.filled // 2)


def _pick_text(stats: list[_Stats]) -> _Stats | None:
    def rank(s: _Stats) -> tuple[bool, bool, bool, float, int]:
        many = s.scalar and s.filled > 0 and s.distinct * 2 >= s.filled
        return (many, s.hinted("text"), s.spaced >= 0.5, s.mean_length, -s.position)

    usable = [s for s in stats if s.scalar and s.filled > 0]
    return max(usable, key=rank, default=None)


def _pick_label(stats: list[_Stats]) -> _Stats | None:
    # A header named "label" stands when no column's content looks like a label: loading
    # then says what is wrong with its values.
    usable = [s for s in stats if _label_plausible(s) or (s.scalar and s.hinted("label"))]
    return max(usable, key=lambda s: (_label_plausible(s), s.hinted("label"), -s.distinct,
                                      s.position), default=None)


def _id_plausible(s: _Stats, n_rows: int) -> bool:
    return (s.scalar and s.filled == n_rows and s.distinct == n_rows
            and s.mean_length <= ID_MAX_LENGTH and not s.fractional)


def _pick_id(stats: list[_Stats], n_rows: int) -> _Stats | None:
    # A column named "id" is read as the id when loading anyway (so a duplicate is refused
    # rather than numbered over): the guess says so instead of promising numbered rows.
    usable = [s for s in stats if _id_plausible(s, n_rows) or s.name == "id"]
    return max(usable, key=lambda s: (_id_plausible(s, n_rows), s.hinted("id"),
                                      -s.mean_length, -s.position), default=None)


def guess_columns(columns: Sequence[str], rows: Sequence[Mapping[str, Any]], *, source: str,
                  text_column: str | None = None, label_column: str | None = None,
                  id_column: str | None = None) -> ColumnChoice:
    """Choose the text, label and id columns of a file from its values (``rows`` may be a
    sample); the columns given are kept. :class:`BadInput` naming ``source`` and the columns
    when no column can be the text or the label (e.g. every column has a different value on
    every row)."""
    stats = [_stats(c, i, rows) for i, c in enumerate(columns)]

    def free() -> list[_Stats]:
        # The columns not chosen yet (a closure: it sees each choice as it is made).
        return [s for s in stats if s.name not in (text_column, label_column, id_column)]

    if text_column:
        text_reason = f"text: {text_column} (given)"
    else:
        text = _pick_text(free())
        if text is None:
            raise BadInput(f"{source}: no column can be the text (columns: "
                           f"{', '.join(columns) or 'none'})")
        text_column, text_reason = text.name, _text_reason(text)
    if label_column:
        label_reason = f"label: {label_column} (given)"
    else:
        label = _pick_label(free())
        if label is None:
            seen = "; ".join(f"{s.name} has {s.distinct} different values in {s.filled} rows"
                             for s in stats if s.name != text_column)
            raise BadInput(f"{source}: no column looks like a label (a few values, each "
                           f"repeated): {seen or 'there is no other column'}; name the label "
                           "column yourself")
        label_column, label_reason = label.name, f"label: {label.name}, {label.distinct} values"
    if id_column:
        id_reason = f"id: {id_column} (given)"
    else:
        ident = _pick_id(free(), len(rows))
        id_column = ident.name if ident else None
        if ident is None:
            id_reason = "id: none (no column of unique short values), rows are numbered"
        elif _id_plausible(ident, len(rows)):
            id_reason = f"id: {ident.name}, unique"
        else:
            id_reason = f"id: {ident.name}, by its name (its values are not unique)"
    return ColumnChoice(text_column, label_column, id_column,
                        (text_reason, label_reason, id_reason))
