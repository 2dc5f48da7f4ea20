"""Parsing JSON that comes from outside: an uploaded file's lines, a model's reply.

``json.loads`` fails in more ways than :class:`json.JSONDecodeError`: nesting deeper than the
interpreter's recursion limit raises :class:`RecursionError`, and an integer of more than 4,300
digits raises a plain :class:`ValueError`. Either would escape handlers written for the first.
:func:`loads_untrusted` turns all of them into one :class:`UntrustedJSONError` with a short
reason, so a bad line is a clear bad-input error and a bad reply a failed row.
"""

from __future__ import annotations

import json
from typing import Any


class UntrustedJSONError(ValueError):
    """The text is not JSON this program can read; ``reason`` says why in a few words."""

    def __init__(self, reason: str, line: int | None = None, column: int | None = None):
        where = f" (line {line}, column {column})" if line is not None else ""
        super().__init__(reason + where)
        self.reason, self.line, self.column = reason, line, column


def loads_untrusted(text: str) -> Any:
    """``json.loads(text)``, raising only :class:`UntrustedJSONError` when it cannot."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise UntrustedJSONError(e.msg, e.lineno, e.colno) from None
    except RecursionError:
        raise UntrustedJSONError("nested too deeply") from None
    except ValueError as e:  # e.g. an integer too long to convert
        raise UntrustedJSONError(str(e).split(";")[0]) from None
