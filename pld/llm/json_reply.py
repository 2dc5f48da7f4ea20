"""Reading JSON out of a model's reply, the way every teacher stage needs it.

Models asked for JSON still wrap it in a Markdown fence (```json ... ```) or put a sentence
before it; both are tolerated here, once, for all stages.
"""

from __future__ import annotations

import re
from typing import Any

from pld.untrusted_json import UntrustedJSONError, loads_untrusted

_WHOLE_FENCE = re.compile(r"^\s*```[\w-]*[ \t]*\n?(.*?)\n?\s*```\s*$", re.S)
_FENCE = re.compile(r"```[\w-]*[ \t]*\n(.*?)```", re.S)


def strip_fences(text: str) -> str:
    """The body of a fence around the whole reply, else of the first fenced block on its own
    lines, else ``text``; stripped. A ``` inside a JSON string is left alone."""
    m = _WHOLE_FENCE.match(text) or _FENCE.search(text)
    return (m.group(1) if m else text).strip()


def loads_reply(text: str) -> Any:
    """The JSON value in a reply; :class:`ValueError` with the parser's message if there is none.

    Fences are stripped first; prose around one JSON object is tolerated by reading from its
    first ``{`` to its last ``}``.
    """
    body = strip_fences(text)
    try:
        return loads_untrusted(body)
    except UntrustedJSONError as err:
        start, end = body.find("{"), body.rfind("}")
        if 0 <= start < end:
            try:
                return loads_untrusted(body[start:end + 1])
            except UntrustedJSONError:
                pass
        raise ValueError(f"not valid JSON: {err}") from None
