"""Reading the values people type on the command line: cluster references, ``--eps`` (and the
clustering options that go with an explicit method), ``--calibration``, and texts given as
``--text`` or ``--file``."""

from __future__ import annotations

from pathlib import Path

import click

from pld.errors import BadInput

NOISE = "noise"


def _number_or_word(value: str, word: str, number: type[int] | type[float], option: str,
                    expected: str) -> int | float | str:
    """``word`` when ``value`` is that word (any case), else ``value`` as a ``number``;
    :class:`BadInput` naming ``option`` otherwise."""
    if value.strip().lower() == word:
        return word
    try:
        return number(value)
    except ValueError:
        raise BadInput(f"{option}: expected {expected} or '{word}', got {value!r}") from None


def parse_cluster_ref(value: str, option: str) -> int | None:
    """A cluster id, or None for ``noise`` (the rules in no cluster)."""
    ref = _number_or_word(value, NOISE, int, option, "a cluster id")
    return None if ref == NOISE else int(ref)


def parse_eps(eps: str) -> float | str:
    """``--eps``: a DBSCAN radius, or ``auto`` (the knee of the k-distance curve)."""
    value = _number_or_word(eps, "auto", float, "--eps", "a number")
    return value if isinstance(value, str) else float(value)


def check_clustering(ctx: click.Context, method: str) -> None:
    """Refuse ``--eps`` or ``--k`` typed with ``--method auto``: auto chooses its own, and a
    value that would be silently ignored reads as if it had been used."""
    if method != "auto":
        return
    for name, belongs in (("eps", "dbscan"), ("k", "kmeans")):
        if ctx.get_parameter_source(name) not in (None, click.core.ParameterSource.DEFAULT):
            raise BadInput(f"--{name} goes with --method {belongs}; --method auto chooses its "
                           "own clustering")


def calibration_method(value: str) -> str | None:
    """The calibration method the pipeline takes for a ``--calibration`` value (None: none)."""
    return None if value == "none" else value


def read_text(path: Path, option: str) -> str:
    """A UTF-8 text file given on the command line; :class:`BadInput` naming it otherwise."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise BadInput(f"{option} {path}: not UTF-8 text (byte {e.start}: {e.reason})") from e
    except OSError as e:
        raise BadInput(f"{option} {path}: cannot read ({e.strerror or e})") from e


def one_text(command: str, text: str | None, file: Path | None) -> str:
    """The text of ``--text`` or ``--file`` (exactly one of them)."""
    if (text is None) == (file is None):
        raise BadInput(f"{command}: give exactly one of --text or --file")
    return text if text is not None else read_text(file, "--file")  # type: ignore[arg-type]
