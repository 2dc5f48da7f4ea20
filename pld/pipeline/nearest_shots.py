"""Nearest-neighbour k-shot: for each item, the ``k`` training examples most similar to it.

The strongest cheap baseline a distilled prompt must beat: instead of ``k`` random training
examples for every item, each item is shown the ``k`` whose inputs lie closest to its own
(cosine of sentence embeddings, an embedder of :mod:`pld.pipeline.embed`), most similar last,
nearest the input. Ties keep the training examples' id order, so the choice is deterministic. A
training example with the item's very text is never shown (it would give the answer away).

The workspace stores rule vectors only, so example vectors are computed per evaluation, once per
text. The method is one *key* text (:meth:`NearestShots.key`): what the evaluation stores and
hashes as its prompt, and what its calibration is keyed by; each item's prompt is derived from
it (:meth:`NearestShots.demos`).
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from pld.errors import BadInput, NotReady
from pld.pipeline.embed import DEFAULT_EMBEDDER, check_embedder_name, get_embedder
from pld.workspace import Workspace


class NearestShots:
    """The ``k`` most similar training examples of ``task`` for any input text."""

    def __init__(self, ws: Workspace, task: str, k: int, *, embedder: str = DEFAULT_EMBEDDER):
        if k < 1:
            raise BadInput(f"--few-shot K must be at least 1, got {k}")
        self._train = ws.query("SELECT id, text, label FROM examples WHERE task = ? "
                               "AND split = 'train' ORDER BY id", [task])
        if not self._train:
            raise NotReady(f"task {task} has no train examples for few-shot demonstrations")
        self.k = k
        self.embedder = embedder
        check_embedder_name(embedder)  # an unknown name is bad input before any work
        self._train_vectors: np.ndarray | None = None
        self._picked: dict[str, list[dict[str, Any]]] = {}
        self._lock = threading.Lock()  # student calls ask for their prompts from threads

    def key(self) -> str:
        """What stands for this method: k, the embedder and a digest of the training set."""
        digest = hashlib.sha256(json.dumps(
            [[r["id"], r["text"], r["label"]] for r in self._train],
            ensure_ascii=False).encode("utf-8")).hexdigest()
        return (f"Nearest-neighbour {self.k}-shot: for each input, the {self.k} training "
                f"examples most similar to it ({self.embedder} sentence embeddings, cosine), "
                f"most similar last, as the demonstrations of the k-shot prompt. Training set "
                f"sha256 {digest}.")

    def prepare(self, texts: Sequence[str]) -> None:
        """Pick the demonstrations of every text not picked yet, embedding them in one batch."""
        with self._lock:
            self._pick(list(dict.fromkeys(t for t in texts if t not in self._picked)))

    def _pick(self, todo: list[str]) -> None:
        if not todo:
            return
        model = get_embedder(self.embedder)
        sims = model.encode(todo) @ self._vectors().T
        for text, row in zip(todo, sims, strict=True):
            order = self._order(row, text)[:self.k]
            # Most similar last: the demonstration nearest the input is the closest one.
            self._picked[text] = [self._train[i] for i in reversed(order)]

    def _vectors(self) -> np.ndarray:
        """The training examples' vectors, embedded once."""
        if self._train_vectors is None:
            self._train_vectors = get_embedder(self.embedder).encode(
                [r["text"] for r in self._train])
        return self._train_vectors

    def _order(self, sims: np.ndarray, text: str) -> list[int]:
        """Training rows by similarity, highest first (ties by id), without ``text`` itself."""
        return [int(i) for i in np.argsort(-np.asarray(sims, dtype=np.float64), kind="stable")
                if self._train[int(i)]["text"] != text]

    def ranked(self, text: str) -> list[dict[str, Any]]:
        """Every training example (id, text, label) but those with ``text`` itself, the most
        similar to ``text`` first; a training text reuses its stored vector."""
        with self._lock:
            train = self._vectors()
            own = next((i for i, r in enumerate(self._train) if r["text"] == text), None)
            vector = (train[own] if own is not None
                      else get_embedder(self.embedder).encode([text])[0])
        return [self._train[i] for i in self._order(train @ vector, text)]

    def demos(self, text: str) -> list[dict[str, Any]]:
        """The training examples (id, text, label) shown with ``text``, most similar last."""
        self.prepare([text])
        return self._picked[text]
