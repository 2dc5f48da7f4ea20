"""Contrastive extraction's pairs: each example beside the most similar training example of
another label, so the teacher writes what separates them instead of restating the task.

Similarity is the nearest-neighbour baseline's (:class:`~pld.pipeline.nearest_shots.NearestShots`:
sentence embeddings of the inputs, cosine, ties in id order), so both read the same neighbours.
Multiple-choice tasks get no pairs: their option letters are drawn anew for every question, so
"another label" is no contrast.
"""

from __future__ import annotations

from typing import Any

from pld.pipeline.nearest_shots import NearestShots
from pld.tasks.store import TaskInfo
from pld.workspace import Workspace

MULTIPLE_CHOICE_NOTE = ("contrastive extraction is off for multiple-choice tasks: option letters "
                        "are assigned anew for every question, so another letter is no contrast")


class Contrasts:
    """Picks the contrast of each example of ``info``'s task; off when ``enabled`` is False,
    for multiple-choice tasks and when the task has no training examples (``note`` says why)."""

    def __init__(self, ws: Workspace, info: TaskInfo, enabled: bool) -> None:
        self.note = ""
        self._shots: NearestShots | None = None
        if not enabled:
            return
        if info.shape == "multiple-choice":
            self.note = MULTIPLE_CHOICE_NOTE
            return
        has_train = ws.query("SELECT 1 FROM examples WHERE task = ? AND split = 'train' LIMIT 1",
                             [info.name])
        if not has_train:
            self.note = "contrastive extraction is off: the task has no training examples"
            return
        self._shots = NearestShots(ws, info.name, 1)

    @property
    def on(self) -> bool:
        """Whether examples are paired."""
        return self._shots is not None

    def of(self, example: dict[str, Any]) -> dict[str, Any] | None:
        """The training example (id, text, label) most similar to ``example`` among those of
        another label; None when contrasts are off or every training example has its label."""
        if self._shots is None:
            return None
        return next((r for r in self._shots.ranked(example["text"])
                     if r["label"] != example["label"]), None)
