"""Fetch the upstream benchmark files from the locations their authors document.

``python -m pld download TASK`` writes them under the repository's ``data/`` in the layout the
loaders read (``stereoset/dev.json``, ``contract_nli/{train,dev,test}.json``,
``logiqa/{Train,Eval,Test}.txt``). Every file is checked against the checksum documented in
``../shared/data/README.md`` (SHA-256, or the Git blob id where that is all that is published)
before it is moved into place; all files of a task are staged first, so a failed download leaves
nothing half-written. Files already present with the right checksum are not fetched again.

``base_url`` (or ``$PLD_DOWNLOAD_BASE_URL``) redirects every request to a mirror that serves
``<base_url>/<host>/<path>``: that is how the tests use a local server instead of the internet.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from pld.errors import BadInput

USER_AGENT = "pld-studio (+https://arxiv.org/abs/2602.21103)"
TIMEOUT_S = 60.0


class DownloadError(Exception):
    """A download failed (network, HTTP status, checksum): a one-line reason."""


@dataclass(frozen=True)
class Target:
    """One file to end up at ``dest`` (relative to the data folder), with its checksums."""

    dest: str
    sha256: str | None = None
    git_blob: str | None = None


@dataclass(frozen=True)
class Source:
    """A URL and what to keep from it: the file itself, or members of a zip archive."""

    url: str
    target: Target | None = None
    members: dict[str, Target] = field(default_factory=dict)


_LOGIQA = "https://raw.githubusercontent.com/lgw863/LogiQA-dataset/master/"
_STEREOSET = Source("https://github.com/moinnadeem/StereoSet/raw/master/data/dev.json",
                    Target("stereoset/dev.json",
                           git_blob="637b1e3d284a3c629b74a4659c583b8eca9bd13e"))
SOURCES: dict[str, list[Source]] = {
    "stereoset": [_STEREOSET],
    "stereoset-stereotype": [_STEREOSET],
    "logiqa": [
        Source(_LOGIQA + "Train.txt", Target(
            "logiqa/Train.txt",
            sha256="7d5bb1f58278e33b395744cd2ad8d7600faa0b3c4d615c659a44ec1181d759fa")),
        Source(_LOGIQA + "Eval.txt", Target(
            "logiqa/Eval.txt",
            sha256="4c49e6753b7262c001506b9151135abf722247035ab075dad93acdea5789c01f")),
        Source(_LOGIQA + "Test.txt", Target(
            "logiqa/Test.txt",
            sha256="359acb78c37802208f7fde9e2f6574b8526527c63d6a336f90a53f1932cb4701")),
    ],
    "contract-nli": [
        Source("https://stanfordnlp.github.io/contract-nli/resources/contract-nli.zip", members={
            "train.json": Target("contract_nli/train.json",
                                 git_blob="0d16f605d3e05ab983d1c983f42f9a791762652b"),
            "dev.json": Target(
                "contract_nli/dev.json",
                sha256="310af7d661d2ab50ee3700169cef524c75f39fb296bbf5a515c229eb0f42e68e"),
            "test.json": Target(
                "contract_nli/test.json",
                sha256="460267b56052a2dc5aead98eb35eadef9e6734d5723d37b4a9790e410f812387"),
            "LICENSE": Target(
                "contract_nli/LICENSE",
                sha256="9e5f1b3c610b9c2da5c313bf81d577a7d1acec686bdb0384edefa6df0f90cd94"),
            "TERMS": Target(
                "contract_nli/TERMS",
                sha256="b86e5b9bd7d2c49fd0d60e1d0842b7f64746abc8b206451acbe9080027cc49c8"),
        }),
    ],
}
#: Shown by the CLI before a download: the terms the upstream authors ask users to accept.
NOTICES: dict[str, str] = {
    "contract-nli": ("Contract-NLI is CC BY 4.0 under the Hitachi America, Ltd. Terms and "
                     "Conditions of Use (saved as data/contract_nli/TERMS); downloading means "
                     "accepting them."),
    "stereoset": "StereoSet is CC BY-SA 4.0.",
    "stereoset-stereotype": "StereoSet is CC BY-SA 4.0.",
    "logiqa": "The LogiQA repository states no license.",
}


def git_blob_id(path: Path) -> str:
    """``git hash-object`` of a file: sha1 over ``blob <size>\\0`` + content."""
    h = hashlib.sha1(f"blob {path.stat().st_size}\0".encode())
    _hash_into(h, path)
    return h.hexdigest()


def sha256_of(path: Path) -> str:
    """SHA-256 of a file, hex."""
    h = hashlib.sha256()
    _hash_into(h, path)
    return h.hexdigest()


def _hash_into(h: hashlib._Hash, path: Path) -> None:
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)


def _mismatch(target: Target, path: Path) -> str | None:
    """Why ``path`` is not the documented ``target`` (None when it checks out)."""
    if target.sha256 and (got := sha256_of(path)) != target.sha256:
        return f"sha256 {got[:16]}... differs from the documented {target.sha256[:16]}..."
    if target.git_blob and (got := git_blob_id(path)) != target.git_blob:
        return f"git blob id {got[:12]}... differs from the documented {target.git_blob[:12]}..."
    return None


def _mirror(url: str, base_url: str | None) -> str:
    if not base_url:
        return url
    parts = urlsplit(url)
    return f"{base_url.rstrip('/')}/{parts.netloc}{parts.path}"


def _fetch(url: str, out: Path, timeout: float) -> None:
    req = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r, open(out, "wb") as f:
            shutil.copyfileobj(r, f, 1 << 20)
    except urllib.error.HTTPError as e:
        raise DownloadError(f"{url}: HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", None) or e
        raise DownloadError(f"cannot reach {urlsplit(url).netloc} ({reason}); this needs an "
                            f"internet connection, or fetch {url} by hand") from None


def download(task: str, dest_dir: str | Path | None = None, *, base_url: str | None = None,
             sources: Sequence[Source] | None = None, timeout: float = TIMEOUT_S) -> list[Path]:
    """Fetch ``task``'s upstream files into ``dest_dir`` (default: the repo's ``data/``).

    Returns the paths of the task's files under ``dest_dir`` (fetched or already there).
    Raises :class:`DownloadError` when offline, on an HTTP error or a checksum mismatch, and
    :class:`BadInput` for a task that has nothing to download.
    """
    if sources is None:
        if task in ("custom", "demo"):
            what = "it is your own file" if task == "custom" else "it ships in data/demo/"
            raise BadInput(f"task {task}: nothing to download ({what})")
        if task not in SOURCES:
            raise BadInput(f"unknown task {task!r}; downloadable: {', '.join(SOURCES)}")
        sources = SOURCES[task]
    if dest_dir is None:
        from pld.tasks import download_dir

        dest_dir = download_dir()
    dest = Path(dest_dir)
    base_url = base_url or os.environ.get("PLD_DOWNLOAD_BASE_URL") or None
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".pld-download-", dir=dest) as tmp:
        staged: list[tuple[Path, Path]] = []
        done: list[Path] = []
        for n, src in enumerate(sources):
            targets = [src.target] if src.target else list(src.members.values())
            final = [dest / t.dest for t in targets]
            if all(p.is_file() and _mismatch(t, p) is None
                   for t, p in zip(targets, final, strict=True)):
                done += final
                continue
            url = _mirror(src.url, base_url)
            raw = Path(tmp) / f"{n}.download"
            _fetch(url, raw, timeout)
            if src.target:
                staged.append(_check(src.target, raw, url, dest))
            else:
                staged += _unzip(src, raw, Path(tmp) / f"{n}.unzipped", url, dest)
        for part, final_path in staged:
            final_path.parent.mkdir(parents=True, exist_ok=True)
            os.replace(part, final_path)
            done.append(final_path)
    return sorted(set(done))


def _check(target: Target, part: Path, url: str, dest: Path) -> tuple[Path, Path]:
    why = _mismatch(target, part)
    if why:
        raise DownloadError(f"{url}: {why} for {target.dest}; nothing was saved")
    return part, dest / target.dest


def _unzip(src: Source, archive: Path, into: Path, url: str, dest: Path) -> list[tuple[Path, Path]]:
    try:
        with zipfile.ZipFile(archive) as z:
            # Members are matched by file name, whatever folder the archive puts them in.
            by_name = {Path(i.filename).name: i for i in z.infolist() if not i.is_dir()}
            out = []
            for name, target in src.members.items():
                info = by_name.get(name)
                if info is None:
                    raise DownloadError(f"{url}: the archive has no {name}; nothing was saved")
                part = into / name
                part.parent.mkdir(parents=True, exist_ok=True)
                with z.open(info) as r, open(part, "wb") as w:
                    shutil.copyfileobj(r, w, 1 << 20)
                out.append(_check(target, part, url, dest))
            return out
    except zipfile.BadZipFile:
        raise DownloadError(f"{url}: not a zip archive; nothing was saved") from None
