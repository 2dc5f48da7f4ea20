"""The options and arguments that commands share, as click decorators.

Command modules use them qualified, beside click's own: ``@options.json_output``,
``@options.model("teacher", "Teacher model string.")``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import click

from pld.cli.common import F


def stacked(*decorators: Callable[[F], F]) -> Callable[[F], F]:
    """Several decorators as one, applied as if written top to bottom above the function."""

    def apply(fn: F) -> F:
        for decorate in reversed(decorators):
            fn = decorate(fn)
        return fn

    return apply


def json_output(fn: F) -> F:
    """``--json``: the result as one JSON object on stdout instead of text for people."""
    return click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")(fn)


def comment(fn: F) -> F:
    """``--comment TEXT`` of every action a person signs."""
    return click.option("--comment", default=None, metavar="TEXT",
                        help="A note kept with this action in the audit trail.")(fn)


def concurrency(calls: str) -> Callable[[F], F]:
    """``--concurrency K``: how many of ``calls`` (``Teacher calls``, ...) are in flight."""
    # IntRange: a zero or negative pool size is bad input (exit 2), not a crash in the pool.
    return click.option(
        "--concurrency", type=click.IntRange(min=1), default=None, metavar="K",
        help=f"{calls} in flight (default: remote 8, local 1; the local model decodes up to "
             "$PLD_LOCAL_PARALLEL, 4, together).")


def clustering(eps_default: str) -> Callable[[F], F]:
    """How stage 2 clusters the rules: ``--method``, ``--eps`` (``inputs.parse_eps`` reads it,
    ``inputs.check_clustering`` refuses it with auto), ``--min-samples``, ``--k`` and
    ``--cover-labels``."""
    return stacked(
        click.option("--method", type=click.Choice(["auto", "dbscan", "hdbscan", "kmeans"]),
                     default="auto", show_default=True,
                     help="Clustering algorithm. auto tries k-means over a range of k, one "
                          "cluster per label (split further), HDBSCAN and DBSCAN, and keeps the "
                          "best silhouette among those where no cluster holds more than 60% of "
                          "the rules; another method is kept as you chose it."),
        click.option("--eps", default=eps_default, show_default=True,
                     help="DBSCAN radius (cosine distance) or 'auto' (knee of the k-distance "
                          "curve); with --method dbscan."),
        click.option("--min-samples", type=int, default=6, show_default=True,
                     help="DBSCAN/HDBSCAN (and auto's density candidates): rules a dense "
                          "neighbourhood needs."),
        click.option("--k", type=int, default=None, help="k-means: number of clusters."),
        click.option("--cover-labels", is_flag=True,
                     help="Give each label whose rules all fall into noise one cluster of them, "
                          "so it still gets a heuristic."))


def calibration(help_text: str) -> Callable[[F], F]:
    """``--calibration max-f1|content-free|none``; ``common.calibration_method`` reads it."""
    return click.option("--calibration", type=click.Choice(["max-f1", "content-free", "none"]),
                        default="max-f1", show_default=True, help=help_text)


def model(name: str, help_text: str) -> Callable[[F], F]:
    """A required ``--NAME MODEL`` option (``--teacher``, ``--student``)."""
    return click.option(f"--{name}", name, required=True, metavar="MODEL", help=help_text)


def merge(fn: F) -> F:
    """``--merge all|by-label|medoid``: how consolidation turns a cluster into a heuristic."""
    return click.option(
        "--merge", type=click.Choice(["all", "by-label", "medoid"]), default="all",
        show_default=True,
        help="How a cluster becomes a heuristic: the teacher merges all its rules (the paper), "
             "or each label's rules apart (parts joined), or no teacher call: each label's "
             "most central rule (medoid), joined.")(fn)


def spend(fn: F) -> F:
    """``--batch``, ``--estimate-only`` and ``--max-cost USD`` of every command that calls a
    model."""
    fn = click.option(
        "--batch", "use_batch", is_flag=True,
        help="Send the uncached calls through the provider's batch API (anthropic/…, "
             "openai/…, openai-compatible servers with /v1/batches) at half the list price; "
             "answers within 24 h. Killed, the same command resumes by polling the same "
             "batches. $PLD_BATCH_POLL_S sets the poll interval (default 30).")(fn)
    fn = click.option(
        "--max-cost", "max_cost", type=float, default=None, metavar="USD",
        help="Stop cleanly before this command's spend would pass USD (list prices, "
             "pld/llm/pricing.py); finished work is kept: rerun with a higher limit to go "
             "on.")(fn)
    return click.option(
        "--estimate-only", is_flag=True,
        help="Print the calls, tokens and dollars this command would spend, per model, and "
             "stop without calling any model.")(fn)


def text_or_file(what: str) -> Callable[[F], F]:
    """``--text`` and ``--file``, two ways to give ``what`` (``the new text``);
    ``common.one_text`` reads them."""
    return stacked(
        click.option("--text", "new_text", default=None, help=f"{what[0].upper()}{what[1:]}."),
        click.option("--file", "file", type=click.Path(dir_okay=False, path_type=Path),
                     default=None, help=f"Read {what} from a UTF-8 text file."))


def signer(fn: F) -> F:
    """The required ``--as NAME`` of every action a person signs."""
    return click.option("--as", "who", required=True, metavar="NAME",
                        help="Your name; recorded in the audit trail.")(fn)
