"""The prompt templates in pld/prompts and their loader."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pld import prompts
from pld.tasks import BUILTIN_TASKS, get_task
from pld.tasks.store import TaskInfo


def test_there_are_templates_and_extract_is_one() -> None:
    assert "extract" in prompts.names()


@pytest.mark.parametrize("name", prompts.names())
def test_every_template_renders_with_its_placeholders(name: str) -> None:
    wanted = prompts.placeholders(name)
    values = {p: f"<<{p}>>" for p in wanted}
    text = prompts.render(name, **values)
    for p in wanted:
        assert f"<<{p}>>" in text
    assert re.search(r"\$\{?[A-Za-z_]", text) is None, "a placeholder was left unfilled"
    assert text.strip()


@pytest.mark.parametrize("name", prompts.names())
def test_a_missing_placeholder_raises_a_clear_error(name: str) -> None:
    wanted = sorted(prompts.placeholders(name))
    if not wanted:  # a constant prompt: nothing can be missing
        assert prompts.render(name) == prompts.path(name).read_text(encoding="utf-8")
        return
    for left_out in wanted:
        values = {p: "x" for p in wanted if p != left_out}
        with pytest.raises(prompts.PromptError,
                           match=rf"{re.escape(name)}.*needs a value for \${left_out}$"):
            prompts.render(name, **values)


def test_extract_template_placeholders() -> None:
    assert prompts.placeholders("extract") >= {"description", "labels", "text", "label"}


def test_values_may_contain_dollars_and_braces() -> None:
    text = prompts.render("extract", description="d", labels="- a", rule_form="r",
                          text='costs $5 {"a": 1} ${label}', label="a")
    assert 'costs $5 {"a": 1} ${label}' in text


def test_unknown_template_is_named() -> None:
    with pytest.raises(prompts.PromptError, match="'no_such_prompt' not found"):
        prompts.render("no_such_prompt")


def test_malformed_template_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "bad.md").write_text("costs $5 and $name\n", encoding="utf-8")
    monkeypatch.setattr(prompts, "PROMPTS_DIR", tmp_path)
    with pytest.raises(prompts.PromptError, match="write \\$\\$ for a dollar"):
        prompts.render("bad", name="x")


@pytest.mark.parametrize("name", BUILTIN_TASKS)
def test_rule_templates_fit_every_builtin_task(name: str) -> None:
    from pld.pipeline.consolidate.merge import shape_note
    from pld.pipeline.extract.stage import build_prompt

    task = get_task(name)
    labels = list(task.labels) or ["yes", "no"]
    info = TaskInfo(name, task.kind, labels, task.task_description, "", {"shape": task.shape})
    text = build_prompt(info, {"text": "An input.", "label": labels[0]})
    assert "$" not in text and "An input." in text
    # Nothing from another domain that a rule could copy.
    assert not re.search(r"money back|refund", text, re.IGNORECASE)
    expected = {"single": "then the label is <LABEL>",
                "pair": "the relation between the two parts",
                "multiple-choice": "choose the option"}[task.shape]
    assert expected in text
    if task.shape == "multiple-choice":
        assert "then the label is" not in text
    note = shape_note(task.shape)
    assert (note == "") == (task.shape == "single")


def test_builtin_task_shapes() -> None:
    shapes = {name: get_task(name).shape for name in BUILTIN_TASKS}
    assert shapes == {"stereoset": "single", "stereoset-stereotype": "pair",
                      "contract-nli": "pair", "logiqa": "multiple-choice", "custom": "single",
                      "demo": "single"}
