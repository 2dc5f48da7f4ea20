"""Errors that mean "the input is wrong" (CLI exit code 2) as opposed to a failure (exit 1)."""

from __future__ import annotations


class BadInput(Exception):
    """Bad user input: the message is one line and names the file, row, field or option."""


class NotReady(BadInput):
    """A stage was asked to run before its inputs exist (e.g. cluster with no rules)."""
