"""Every command's ``--help`` teaches: an ``Example:`` block that parses as written, and help
text on every option and argument click shows."""

from __future__ import annotations

import inspect
import shlex
from collections.abc import Iterator

import click
import pytest

from pld.cli import cli

EXAMPLE_HEADINGS = ("Example:", "Examples:")
PROGRAMS = (["python", "-m", "pld"], ["pld"])


def _walk(cmd: click.Command, path: tuple[str, ...] = ()) -> Iterator[
        tuple[str, click.Command]]:
    """Every command of the tree, groups included, with its full name (``review preamble``)."""
    yield " ".join(("pld", *path)), cmd
    if isinstance(cmd, click.Group):
        for name, sub in sorted(cmd.commands.items()):
            yield from _walk(sub, (*path, name))


COMMANDS = list(_walk(cli))


def _example_block(cmd: click.Command) -> list[str] | None:
    """The lines under the ``Example:`` heading of the help's last paragraph, or None when the
    help does not end with one (kept unwrapped by click's ``\\b`` marker)."""
    lines = inspect.cleandoc(cmd.help or "").split("\n\n")[-1].splitlines()
    if len(lines) < 3 or lines[0] != "\b" or lines[1] not in EXAMPLE_HEADINGS:
        return None
    commands, pending = [], ""
    for line in lines[2:]:
        pending += line.strip()
        if pending.endswith("\\"):  # goes on on the next line, as in a shell
            pending = pending[:-1]
        elif pending:
            commands.append(pending)
            pending = ""
    return commands


def _argv(line: str) -> list[str]:
    """The arguments after the program name of one example command line."""
    words = shlex.split(line)
    for program in PROGRAMS:
        if words[:len(program)] == program:
            return words[len(program):]
    raise AssertionError(f"example does not start with python -m pld or pld: {line}")


@pytest.mark.parametrize(("name", "cmd"), COMMANDS, ids=[name for name, _ in COMMANDS])
def test_help_ends_with_an_example_block(name: str, cmd: click.Command) -> None:
    block = _example_block(cmd)
    assert block, f"{name}: help does not end with a \\b 'Example:' block"


@pytest.mark.parametrize(("name", "cmd"), COMMANDS, ids=[name for name, _ in COMMANDS])
def test_every_option_and_argument_has_help(name: str, cmd: click.Command) -> None:
    ctx = click.Context(cmd, info_name=name.split()[-1])
    undocumented = [p.opts[0] for p in cmd.get_params(ctx)
                    if isinstance(p, click.Option) and not p.hidden and not (p.help or "").strip()]
    assert not undocumented, f"{name}: options without help text: {undocumented}"
    # click gives arguments no help of their own: the command's help names each one instead.
    unnamed = [p.human_readable_name for p in cmd.get_params(ctx)
               if isinstance(p, click.Argument) and p.human_readable_name not in (cmd.help or "")]
    assert not unnamed, f"{name}: arguments its help never mentions: {unnamed}"


@pytest.mark.parametrize(("name", "cmd"), COMMANDS, ids=[name for name, _ in COMMANDS])
def test_examples_parse_as_written(name: str, cmd: click.Command,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Each example line names this command and its options and values parse: the command
    bodies are swapped for no-ops, so nothing opens a workspace or calls a model."""
    ran: list[str] = []
    for leaf_name, leaf in COMMANDS:
        if not isinstance(leaf, click.Group):
            monkeypatch.setattr(leaf, "callback",
                                lambda _name=leaf_name, **_: ran.append(_name))
    for line in _example_block(cmd) or []:
        ran.clear()
        try:
            cli.main(_argv(line), prog_name="pld", standalone_mode=False)
        except click.ClickException as e:
            pytest.fail(f"{name}: example does not parse: {line}\n  {e.format_message()}")
        # A group's examples run its subcommands; a command's run that command.
        assert ran and (ran[0] == name or ran[0].startswith(f"{name} ")), (
            f"{name}: example runs {ran or 'nothing'}: {line}")


def test_the_walk_sees_every_command_of_the_contract() -> None:
    """The walk above covers the whole tree: the commands of DESIGN.md's contract are in it."""
    names = {name for name, _ in COMMANDS}
    contract = ["tasks", "load", "download", "ask", "extract", "cluster", "consolidate",
                "review list", "review show", "review edit", "review approve", "review reject",
                "resolve", "eval", "export", "run", "calls", "describe", "review impact",
                "review queue", "verify"]
    assert not [c for c in contract if f"pld {c}" not in names]
