"""The one way to ask the teacher for JSON: ask, parse, re-ask once with the parse error.

Extraction, consolidation, the conflict loop and task descriptions all ask the teacher for a JSON
object and all handle a bad reply the same way: the reply and the parse error go back to the
teacher in the same conversation, once; a second bad reply is an :class:`UnusableReply` that
the stage stores as a failed row (never dropped).

The cache rule is the same for all of them: a cached reply is served only when it parses.
Replaying a cached unusable reply would fail the same item the same way on every rerun, so such
a reply is asked again without the cache. ``fresh`` skips the cache altogether (a stage's
``--retry-failed``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from pld.llm import calls
from pld.llm.base import Message
from pld.workspace import Workspace

T = TypeVar("T")

REASK = "Your reply could not be used: {error}. Reply again with only the JSON object{shape}, " \
        "nothing else."


class UnusableReply(ValueError):
    """Both replies failed to parse. ``raw`` is the last reply, ``call_id`` its call-log row."""

    def __init__(self, message: str, *, raw: str, call_id: int) -> None:
        super().__init__(message)
        self.raw = raw
        self.call_id = call_id


def ask_json(
    ws: Workspace,
    teacher: str,
    prompt: str,
    parse: Callable[[str], T],
    *,
    schema: dict[str, Any],
    max_tokens: int,
    stage: str,
    run_id: int | None = None,
    system: str | None = None,
    fresh: bool = False,
    shape_hint: str = "",
) -> tuple[T, calls.CallResult]:
    """Ask ``teacher`` the user message ``prompt`` for JSON matching ``schema``; return what
    ``parse`` makes of the reply, and the call that gave it.

    ``parse`` raises :class:`ValueError` naming what is wrong with a reply; that message is what
    the teacher is told when re-asked. ``shape_hint`` (e.g. ``' {"rule": "..."}'``) is repeated
    in the re-ask. Raises :class:`UnusableReply` when the re-asked reply fails too and
    :class:`~pld.llm.calls.CallFailed` when a call fails for good.
    """

    def ask(messages: list[Message]) -> tuple[calls.CallResult, T | None, str]:
        def call(use_cache: bool) -> calls.CallResult:
            return calls.complete(ws, teacher, messages, system=system, json_schema=schema,
                                  max_tokens=max_tokens, stage=stage, run_id=run_id,
                                  role="teacher", use_cache=use_cache)

        result = call(not fresh)
        parsed, error = _parse(parse, result.text)
        if error and result.cached:
            result = call(False)
            parsed, error = _parse(parse, result.text)
        return result, parsed, error

    messages: list[Message] = [{"role": "user", "content": prompt}]
    first, parsed, first_error = ask(messages)
    if not first_error:
        return parsed, first  # type: ignore[return-value]  # parsed is set when no error
    retry: list[Message] = [
        *messages, {"role": "assistant", "content": first.text},
        {"role": "user", "content": REASK.format(error=first_error, shape=shape_hint)},
    ]
    second, parsed, error = ask(retry)
    if error:
        raise UnusableReply(f"unusable reply twice: first reply: {first_error}; after re-ask: "
                            f"{error}", raw=second.text, call_id=second.call_id)
    return parsed, second  # type: ignore[return-value]


def _parse(parse: Callable[[str], T], text: str) -> tuple[T | None, str]:
    try:
        return parse(text), ""
    except ValueError as err:
        return None, str(err) or type(err).__name__
