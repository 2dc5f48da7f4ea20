"""Who is acting: a person's name, spelled one way, and how we know it is theirs.

Every mutation in a workspace (an edit, an approval, a job start, a clustering accepted) is done
by an :class:`Identity`. The name is normalised once, when the identity is made, so every
comparison that four-eyes and the approver list rely on compares the same spelling; the kind
says how far the name can be trusted:

* ``self-declared``: typed by the person (the app's sidebar, the CLI's ``--as``);
* ``oidc``: the name a sign-in provider vouched for (``st.login``);
* ``auto``: a benchmark or ``run --auto-approve-as``, recorded as such.

Names that begin ``teacher:`` (text a model wrote) and ``pld:`` (PLD Studio's own steps) are
reserved: no person can act under them.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

from pld.errors import BadInput

SELF_DECLARED, OIDC, AUTO = "self-declared", "oidc", "auto"
IDENTITY_KINDS = (SELF_DECLARED, OIDC, AUTO)
TEACHER_PREFIX = "teacher:"  # the author name of text a model wrote; no person may use it
SYSTEM_PREFIX = "pld:"  # PLD Studio's own actors (the template, the conflict loop's revert)
RESERVED_PREFIXES = (TEACHER_PREFIX, SYSTEM_PREFIX)

# Unicode's Default_Ignorable_Code_Point (DerivedCoreProperties.txt): characters a renderer
# shows as nothing. Python's unicodedata does not expose the property, and several of them are
# not format characters (the Hangul fillers are letters, the variation selectors marks), so a
# category test alone lets "bob" plus one of them pass as a second person.
_DEFAULT_IGNORABLE = (
    (0x00AD, 0x00AD), (0x034F, 0x034F), (0x061C, 0x061C), (0x115F, 0x1160),
    (0x17B4, 0x17B5), (0x180B, 0x180F), (0x200B, 0x200F), (0x202A, 0x202E),
    (0x2060, 0x206F), (0x3164, 0x3164), (0xFE00, 0xFE0F), (0xFEFF, 0xFEFF),
    (0xFFA0, 0xFFA0), (0xFFF0, 0xFFF8), (0x1BCA0, 0x1BCA3), (0x1D173, 0x1D17A),
    (0xE0000, 0xE0FFF),
)
# Shown as blank space, yet neither whitespace nor ignorable (Braille pattern blank).
_BLANK = {"\u2800"}


def _invisible(ch: str) -> bool:
    cp = ord(ch)
    if ch in _BLANK or any(lo <= cp <= hi for lo, hi in _DEFAULT_IGNORABLE):
        return True
    return unicodedata.category(ch) in ("Cf", "Cc", "Co", "Cn") and ch not in " \t\n"


def normalize_name(name: str) -> str:
    """The one spelling of a person's name: NFKC, invisible characters (every default-ignorable
    code point, control and format characters, blank patterns) removed, runs of whitespace made
    one space, casefolded. "Alice", "alice" and "alice" followed by a zero-width space or a
    Hangul filler are one person. Look-alike letters of other scripts (a Cyrillic "о" in
    "bоb") are not folded: that is the limit of a self-declared name."""
    text = unicodedata.normalize("NFKC", name or "")
    text = "".join(" " if ch in _BLANK else ch for ch in text if ch in _BLANK or not _invisible(ch))
    return " ".join(text.split()).casefold()


@dataclass(frozen=True)
class Identity:
    """A person acting, with the kind of identity (:data:`IDENTITY_KINDS`).

    Making one checks and normalises the name (:func:`normalize_name`): it must keep a letter
    or a digit and must not use a reserved prefix; :class:`BadInput` says why otherwise. So an
    ``Identity`` that exists is one that may act, and ``a.name == b.name`` is the one test of
    "the same person".
    """

    name: str
    kind: str = SELF_DECLARED

    def __post_init__(self) -> None:
        name = normalize_name(self.name)
        if not name:
            raise BadInput("--as: a reviewer name is required")
        if not any(unicodedata.category(ch)[0] in "LN" for ch in name):
            raise BadInput(f"--as {name!r}: a name needs at least one letter or digit")
        if name.startswith(RESERVED_PREFIXES):
            raise BadInput(f"--as {name!r}: names starting with 'teacher:' or 'pld:' are "
                           "reserved for models and PLD Studio itself")
        if self.kind not in IDENTITY_KINDS:
            raise BadInput(f"identity kind {self.kind!r}: use one of "
                           f"{', '.join(IDENTITY_KINDS)}")
        object.__setattr__(self, "name", name)

    def __str__(self) -> str:
        return f"{self.name} ({self.kind})"

    @property
    def is_person(self) -> bool:
        """False for PLD Studio's own steps and for a model (:meth:`system`, :meth:`teacher`)."""
        return not self.name.startswith(RESERVED_PREFIXES)

    @classmethod
    def system(cls, step: str) -> Identity:
        """PLD Studio's own step as the actor of an audit row (``pld:STEP``, kind ``auto``):
        the conflict loop's revert, the preamble template, a job nobody named."""
        return cls._reserved(SYSTEM_PREFIX + step)

    @classmethod
    def teacher(cls, model: str) -> Identity:
        """A model as the writer of a text (``teacher:MODEL``, kind ``auto``)."""
        return cls._reserved(TEACHER_PREFIX + model)

    @classmethod
    def _reserved(cls, name: str) -> Identity:
        # The one way round the reserved-prefix check: only these constructors use it.
        made = object.__new__(cls)
        object.__setattr__(made, "name", name)
        object.__setattr__(made, "kind", AUTO)
        return made
