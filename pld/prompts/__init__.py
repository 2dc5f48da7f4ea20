"""Prompt templates: readable Markdown files in this folder, filled in with ``string.Template``.

A template ``pld/prompts/<name>.md`` uses ``$name`` (or ``${name}``) placeholders, so the JSON
braces that prompts are full of need no escaping; a literal dollar sign is written ``$$``.
Templates are read from disk on every call, so an edited prompt takes effect without a restart.
"""

from __future__ import annotations

from pathlib import Path
from string import Template

PROMPTS_DIR = Path(__file__).resolve().parent


class PromptError(ValueError):
    """A template is missing, malformed, or was rendered without a value it needs."""


def names() -> list[str]:
    """The names of all templates in :data:`PROMPTS_DIR`, sorted."""
    return sorted(p.stem for p in PROMPTS_DIR.glob("*.md"))


def path(name: str) -> Path:
    """The file that holds template ``name``."""
    return PROMPTS_DIR / f"{name}.md"


def template(name: str) -> Template:
    """Load template ``name``; :class:`PromptError` if it does not exist or is malformed."""
    file = path(name)
    if not file.is_file():
        have = ", ".join(names())
        raise PromptError(f"prompt template {name!r} not found ({file}); have: {have}")
    tpl = Template(file.read_text(encoding="utf-8"))
    if not tpl.is_valid():
        raise PromptError(f"prompt template {file}: a '$' that starts no valid placeholder "
                          "(write $$ for a dollar)")
    return tpl


def placeholders(name: str) -> set[str]:
    """The placeholder names template ``name`` uses."""
    return set(template(name).get_identifiers())


def render(name: str, /, **values: object) -> str:
    """Fill template ``name`` with ``values`` (converted with ``str``).

    Every placeholder needs a value: a missing one raises :class:`PromptError` naming the template
    and the placeholders, rather than sending a prompt with a hole in it. Extra values are ignored,
    so callers may pass a common set of values to several templates.
    """
    tpl = template(name)
    missing = set(tpl.get_identifiers()) - values.keys()
    if missing:
        wanted = ", ".join(f"${m}" for m in sorted(missing))
        raise PromptError(f"prompt template {name!r} ({path(name)}) needs a value for {wanted}")
    return tpl.substitute({k: str(v) for k, v in values.items()})
