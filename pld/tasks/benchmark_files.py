"""Benchmarks read from files in one data folder: each file parsed once, and the pools and the
status that its upstream train / validation / test files give.

The validation and test files are required. With the train file too, each split comes from its
own file and the task is complete; without it, train and val are drawn from the validation file
(after any ``trainval_extras``, such as a truncated training file) and the task is partial.
"""

from __future__ import annotations

import functools
from abc import abstractmethod
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import ClassVar, TypeVar

from pld.errors import BadInput
from pld.tasks.base import (
    DataDir,
    Item,
    Pool,
    PoolInfo,
    Task,
    TaskStatus,
    as_roots,
    find_file,
    pool_info,
)

Parsed = TypeVar("Parsed")
Found = Mapping[str, Path | None]


def cached_per_file(maxsize: int) -> Callable[[Callable[[Path], Parsed]], Callable[[Path], Parsed]]:
    """Decorate a file parser so that each file is parsed once while it is unchanged: results
    are cached per path, modification time and size (``maxsize`` files)."""

    def decorate(parse: Callable[[Path], Parsed]) -> Callable[[Path], Parsed]:
        @functools.lru_cache(maxsize=maxsize)
        def parse_version(path: str, mtime_ns: int, size: int) -> Parsed:
            return parse(Path(path))

        @functools.wraps(parse)
        def read(path: Path) -> Parsed:
            st = path.stat()
            return parse_version(str(path), st.st_mtime_ns, st.st_size)

        return read

    return decorate


class FileBenchmark(Task):
    """A benchmark whose ``files`` (key -> file name; keys ``train``, ``val`` and ``test``, plus
    any ``trainval_extras``) sit in ``folder`` under a data dir, fetched by
    ``python -m pld download <name>``. ``complete_notes`` describe the status with every file.
    """

    kind = "benchmark"
    folder: ClassVar[str]
    files: ClassVar[Mapping[str, str]]
    trainval_extras: ClassVar[tuple[str, ...]] = ()
    complete_notes: ClassVar[str]

    @abstractmethod
    def read_items(self, path: Path) -> list[Item]:
        """The items of one of the task's files."""

    @abstractmethod
    def partial_notes(self, found: Found, pools: Sequence[PoolInfo]) -> str:
        """The status notes when the train file is missing (``pools``: train+val, then test)."""

    def find(self, roots: Sequence[Path]) -> dict[str, Path | None]:
        """Each file's first copy under ``roots`` (None where there is none), by key."""
        return {key: find_file(roots, self._rel(key)) for key in self.files}

    def _rel(self, key: str) -> str:
        return f"{self.folder}/{self.files[key]}"

    def pools(self, data_dir: DataDir = None) -> list[Pool]:
        """Train / val / test pools from their own files, or train+val from the validation file
        (after the extras that are there) when the train file is absent."""
        roots = as_roots(data_dir)
        found = self.find(roots)
        missing = [self._rel(key) for key in ("val", "test") if found[key] is None]
        if missing:
            raise BadInput(f"{self.name}: {', '.join(missing)} not found under "
                           f"{', '.join(map(str, roots))}; run: python -m pld download {self.name}")
        train, val, test = found["train"], found["val"], found["test"]
        assert val is not None and test is not None
        if train is not None:
            pools = [self._pool(("train",), [train]), self._pool(("val",), [val])]
        else:
            extras = [p for key in self.trainval_extras if (p := found[key]) is not None]
            pools = [self._pool(("train", "val"), [*extras, val])]
        return [*pools, self._pool(("test",), [test])]

    def _pool(self, splits: tuple[str, ...], paths: list[Path]) -> Pool:
        return Pool(splits, [it for p in paths for it in self.read_items(p)],
                    tuple(p.name for p in paths))

    def status(self, data_dir: DataDir = None) -> TaskStatus:
        """Complete with the train file; partial (train and val from the validation file)
        without it; unavailable, naming the missing files, without validation or test file."""
        roots = as_roots(data_dir)
        found = self.find(roots)
        files = [str(p) for p in found.values() if p is not None]
        try:
            pools = [pool_info(p) for p in self.pools(roots)]
        except BadInput as e:
            return TaskStatus(self.name, False, False, files=files, notes=str(e), missing=[
                self._rel(key) for key in ("train", "val", "test") if found[key] is None])
        if found["train"] is not None:
            return TaskStatus(self.name, True, True, files=files, pools=pools,
                              notes=self.complete_notes)
        return TaskStatus(self.name, True, False, files=files, missing=[self._rel("train")],
                          notes=self.partial_notes(found, pools), pools=pools)
