"""Heuristic warnings on an extracted rule, for reviewers: :data:`FLAGS` names them.

A rule that restates its label, names no label or the wrong one, copies the example or (for
multiple-choice tasks) names an option letter is kept, flagged, for a person to look at. A rule
that restates the task description or a label's name (``restates_task``) is judged from its
embedding similarity to them and, once the student has tried it, from its verified effect
(:func:`restatement_reason`; :mod:`~pld.pipeline.extract.restatements` measures and marks).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

FLAGS: dict[str, str] = {
    "restates_label": "the rule has no condition (no if/when/unless/because/that... word) or "
                      "fewer than two words besides the label and filler words",
    "no_label": "the rule names none of the task's labels",
    "wrong_label": "the rule names labels, but not the example's gold label",
    "copies_example": "the rule copies 5 or more consecutive words from the example "
                      "(likely names an entity or is not generalised)",
    "names_option": "a multiple-choice rule names an option letter, which says nothing about "
                    "another question",
    "restates_task": "the rule's condition reads like the task description or a label's name, "
                     "and (once verified) moves the student's answers by nearly nothing",
}
RESTATES_TASK = "restates_task"

# Thresholds of ``restates_task``, on all-MiniLM cosine between a rule's condition and the task
# description's sentences and parts, or a label's name. Measured on the demo, a privacy-policy
# task and a ticket-routing one: conditions that restate ("the customer is dissatisfied with the
# bank's service", "the message is about billing") score 0.55-0.74, conditions that carry a
# decision feature ("the clause mentions cookies", "the customer was charged twice for the same
# invoice") 0.23-0.45; a few restatements score lower ("the clause does not answer the
# question", 0.39). Before the student has tried a rule, similarity alone decides, so the bar
# is high (only the clearest restatements); once its effect is known, a rule that also moved
# nothing is flagged from just above the feature range. A wrong flag costs a useful rule its
# own heuristic, a missed one costs little, so both bars sit on the side of missing.
SIMILAR_ALONE = 0.70
SIMILAR_WITH_NO_EFFECT = 0.50
# |effect| below which a verified rule moved nothing. The effect is the mean change of the
# gold label's calibrated probability over about five items (a source, its contrast, three
# neighbours), so 0.02 is one item moving by 0.1 or every item by 0.02: too little to turn
# a calibrated answer unless the item already sat on the boundary. Scores are asked at
# temperature 0, so this bar is about use, not about sampling noise.
NO_EFFECT = 0.02

# Words that introduce a condition; a rule without any of them is "label is X" in disguise.
_CONDITION_WORDS = frozenset({
    "if", "when", "whenever", "unless", "because", "where", "wherever", "while", "whether",
    "that", "which", "who", "whom", "whose", "with", "without", "since", "given", "provided",
    "once", "only",
})
# Words that carry no condition of their own in "If ..., then the label is X." style rules.
_FILLER_WORDS = frozenset({
    "the", "a", "an", "label", "labels", "labelled", "labeled", "is", "are", "be", "being",
    "should", "must", "then", "it", "its", "this", "text", "texts", "example", "examples",
    "sample", "input", "sentence", "answer", "class", "category", "classified", "classify",
    "as", "so", "therefore", "thus", "always", "of",
})
_COPY_SPAN = 5


def _norm(s: str) -> str:
    return re.sub(r"[\s_]+", " ", s.lower()).strip()


def _label_pattern(label: str) -> re.Pattern[str]:
    return re.compile(rf"(?<![\w-]){re.escape(_norm(label))}(?![\w-])")


def labels_named(rule: str, labels: Iterable[str]) -> list[str]:
    """The labels a rule names as whole words (case- and ``_``/space-insensitive).

    Longer labels are matched first and blanked out, so a rule naming ``not_entailment`` does not
    also count as naming ``entailment``.
    """
    text = _norm(rule)
    found = []
    for label in sorted(labels, key=lambda lab: len(_norm(lab)), reverse=True):
        pattern = _label_pattern(label)
        if pattern.search(text):
            found.append(label)
            text = pattern.sub(" # ", text)
    return found


def names_option(rule: str, letters: Iterable[str]) -> bool:
    """Whether a rule names an option letter: "option B", "answer is (C)", "(D)", "'A'".

    Case-sensitive on the letter, so the article "a" is not taken for option A.
    """
    alt = "|".join(re.escape(x) for x in letters)
    pattern = (rf"(?:\b(?:[Oo]ption|[Aa]nswer|[Cc]hoice|[Ll]etter)\s+(?:is\s+)?\(?(?:{alt})\)?"
               rf"|\((?:{alt})\)|[\"'](?:{alt})[\"'])(?![\w-])")
    return re.search(pattern, rule) is not None


def _lacks_condition(rule: str, labels: list[str]) -> bool:
    without_labels = _norm(rule)
    for label in sorted(labels, key=lambda lab: len(_norm(lab)), reverse=True):
        without_labels = _label_pattern(label).sub(" ", without_labels)
    words = re.findall(r"[^\W_]+(?:['-][^\W_]+)*", without_labels)
    content = [w for w in words if w not in _FILLER_WORDS and w not in _CONDITION_WORDS]
    return not any(w in _CONDITION_WORDS for w in words) or len(content) < 2


def flag_rule(rule: str, gold: str, labels: list[str], example_text: str,
              shape: str = "single") -> list[str]:
    """Heuristic warnings for one rule (names from :data:`FLAGS`), in a fixed order.

    A multiple-choice rule says how to choose an option rather than naming the gold letter, so
    it is checked for naming a letter instead of for naming the gold label.
    """
    flags = []
    if _lacks_condition(rule, [] if shape == "multiple-choice" else labels):
        flags.append("restates_label")
    if shape == "multiple-choice":
        if names_option(rule, labels):
            flags.append("names_option")
    else:
        named = labels_named(rule, labels)
        if not named:
            flags.append("no_label")
        elif gold not in named:
            flags.append("wrong_label")
    if _copies_span(rule, example_text, _COPY_SPAN):
        flags.append("copies_example")
    return flags


def _copies_span(rule: str, text: str, n: int) -> bool:
    def grams(s: str) -> set[tuple[str, ...]]:
        tokens = re.findall(r"\w+", s.lower())
        return {tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)}

    return bool(grams(rule) & grams(text))


def restatement_reason(similarity: float | None, similar_to: str | None,
                       effect: float | None) -> str | None:
    """Why a rule is a restatement of the task (``restates_task``), or None when it is not.

    ``similarity`` is the rule condition's highest cosine to the task description's parts and
    the labels' names (``similar_to`` names the closest); ``effect`` the rule's verified effect
    on the student, None before verification. Verified: a rule that moved the student's answers
    (|effect| >= :data:`NO_EFFECT`) is no restatement, whatever it reads like.
    """
    if similarity is None:
        return None
    close = f"its condition reads like {similar_to or 'the task'} (similarity {similarity:.2f}"
    if effect is None:
        if similarity >= SIMILAR_ALONE:
            return f"{close} >= {SIMILAR_ALONE:.2f}; not verified with the student yet)"
        return None
    if similarity >= SIMILAR_WITH_NO_EFFECT and abs(effect) < NO_EFFECT:
        return (f"{close} >= {SIMILAR_WITH_NO_EFFECT:.2f}) and, alone in the student's prompt, "
                f"it moved the gold label's probability by {effect:+.3f} "
                f"(|effect| < {NO_EFFECT})")
    return None
