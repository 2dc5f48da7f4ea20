"""pld.identity: one spelling per person, reserved names refused, the kinds checked."""

from __future__ import annotations

import pytest

from pld.errors import BadInput
from pld.identity import AUTO, OIDC, SELF_DECLARED, Identity, normalize_name


@pytest.mark.parametrize("spelling", [
    "Bob", " bob ", "BOB", "bob\u200b", "bob\u3164", "bob\u115f", "bob\u2800", "bob\u034f",
    "bob\ufe0f", "b\u00adob", "bob\U000e0041", "bob\u2060", "\uff42\uff4f\uff42",
])
def test_invisible_and_compatibility_spellings_are_one_person(spelling: str) -> None:
    assert Identity(spelling).name == "bob"
    assert Identity(spelling) == Identity("bob")


def test_inner_whitespace_is_folded_but_kept() -> None:
    assert normalize_name("Ana\u00a0  María") == "ana maría"


@pytest.mark.parametrize("name", ["", "   ", "\u3164", "\u2800\u200b", "---", "!!"])
def test_a_name_needs_a_letter_or_digit(name: str) -> None:
    with pytest.raises(BadInput, match="name"):
        Identity(name)


@pytest.mark.parametrize("name", ["teacher:local/default", "pld:resolve", "PLD:x"])
def test_reserved_prefixes_are_refused(name: str) -> None:
    with pytest.raises(BadInput, match="reserved"):
        Identity(name)


def test_kinds() -> None:
    assert Identity("a").kind == SELF_DECLARED
    assert Identity("a", OIDC) != Identity("a", AUTO)
    with pytest.raises(BadInput, match="identity kind"):
        Identity("a", "admin")


def test_look_alike_letters_of_another_script_stay_apart() -> None:
    # The documented limit of self-declared names: a Cyrillic "о" is another name.
    assert Identity("b\u043eb").name != Identity("bob").name


def test_system_and_teacher_actors_are_not_people() -> None:
    assert Identity.system("resolve").name == "pld:resolve"
    assert Identity.teacher("local/default").name == "teacher:local/default"
    assert Identity.system("resolve").kind == AUTO
    assert not Identity.teacher("local/default").is_person
    assert Identity("ana").is_person
