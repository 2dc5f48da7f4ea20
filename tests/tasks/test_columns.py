"""Guessing a file's text, label and id columns from their values."""

from __future__ import annotations

from typing import Any

import pytest

from pld.errors import BadInput
from pld.tasks.columns import guess_columns

AREAS = ["billing", "onboarding", "mobile app"]


def _tickets(n: int = 12) -> list[dict[str, Any]]:
    """The analyst's file: ``ticket_id, complaint, product_area``."""
    return [{"ticket_id": f"T-{1000 + i}",
             "complaint": f"The trial was supposed to end after {i + 7} days, but I was "
                          f"charged anyway and nobody answers my mails (case {i}).",
             "product_area": AREAS[i % 3]} for i in range(n)]


def test_the_issue_file_maps_text_label_and_id_from_content() -> None:
    rows = _tickets()
    choice = guess_columns(["ticket_id", "complaint", "product_area"], rows, source="t.csv")
    assert (choice.text_column, choice.label_column, choice.id_column) == (
        "complaint", "product_area", "ticket_id")
    mean = round(sum(len(r["complaint"]) for r in rows) / len(rows))
    assert choice.reasons == (f"text: complaint, free text averaging {mean} characters",
                              "label: product_area, 3 values", "id: ticket_id, unique")
    assert choice.as_dict() == {"text": "complaint", "label": "product_area",
                                "id": "ticket_id", "reasons": list(choice.reasons)}


def test_a_numeric_label_is_a_label() -> None:
    rows = [{"stars": i % 5 + 1, "review": f"Arrived late but works fine, order {i}",
             "score": i / 7} for i in range(20)]
    choice = guess_columns(["stars", "review", "score"], rows, source="r.jsonl")
    assert (choice.text_column, choice.label_column) == ("review", "stars")
    assert choice.reasons[1] == "label: stars, 5 values"
    # Unique, but fractional numbers are scores, not ids.
    assert choice.id_column is None and choice.reasons[2].startswith("id: none")


def test_no_plausible_label_says_so_naming_the_columns() -> None:
    rows = [{"ref": f"r{i}", "note": f"free text number {i} about something"} for i in range(8)]
    with pytest.raises(BadInput, match=r"notes\.csv: no column looks like a label .*"
                                       r"ref has 8 different values in 8 rows"):
        guess_columns(["ref", "note"], rows, source="notes.csv")


def test_content_wins_over_a_header_name_and_names_break_ties() -> None:
    rows = [{"label": f"unique note {i}", "body": f"a long message about case number {i}",
             "kind": AREAS[i % 3]} for i in range(12)]
    choice = guess_columns(["label", "body", "kind"], rows, source="x.csv")
    # "label" has a different value on every row: not a label, whatever its name.
    assert choice.label_column == "kind"
    # Both "label" and "lang" can be labels, "text" and "notes" texts: the names decide.
    rows = [{"text": f"short {i}", "notes": f"a much longer free-text note, number {i}",
             "label": "p" if i % 2 else "q", "lang": "en" if i % 2 else "de"}
            for i in range(12)]
    choice = guess_columns(["text", "notes", "label", "lang"], rows, source="x.csv")
    assert (choice.text_column, choice.label_column) == ("text", "label")


def test_given_columns_are_kept_and_the_rest_guessed() -> None:
    choice = guess_columns(["ticket_id", "complaint", "product_area"], _tickets(),
                           source="t.csv", text_column="ticket_id")
    assert (choice.text_column, choice.label_column, choice.id_column) == (
        "ticket_id", "product_area", None)
    assert choice.reasons[0] == "text: ticket_id (given)"


def test_a_column_named_id_stays_the_id_even_when_not_unique() -> None:
    rows = [{"id": str(i % 4), "text": f"message number {i} here", "label": "p" if i % 2 else "q"}
            for i in range(8)]
    choice = guess_columns(["id", "text", "label"], rows, source="x.csv")
    # Loading reads it as the id anyway and refuses the duplicates, naming the line.
    assert choice.id_column == "id"
    assert choice.reasons[2] == "id: id, by its name (its values are not unique)"
