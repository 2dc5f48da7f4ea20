"""Downloads against a local HTTP server on 127.0.0.1 (never the internet)."""

from __future__ import annotations

import dataclasses
import functools
import io
import json
import shutil
import socket
import threading
import zipfile
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from pld.errors import BadInput
from pld.tasks import REPO_ROOT
from pld.tasks.contract_nli import ContractNLI
from pld.tasks.download import (
    SOURCES,
    DownloadError,
    Target,
    download,
    git_blob_id,
    sha256_of,
)
from pld.tasks.logiqa import LogiQA
from pld.tasks.stereoset import StereoSetDomain

SHARED = REPO_ROOT.parent / "shared" / "data"


class Mirror:
    """Serves files from a folder laid out as ``<host>/<path>``; records requested paths."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.requests: list[str] = []
        mirror = self

        class Handler(SimpleHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                mirror.requests.append(self.path)
                super().do_GET()

        self.server = ThreadingHTTPServer(
            ("127.0.0.1", 0), functools.partial(Handler, directory=str(root)))
        self.server.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def put(self, url: str, data: bytes) -> None:
        host_path = url.split("://", 1)[1]
        p = self.root / host_path
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)


@pytest.fixture
def mirror(tmp_path: Path) -> Iterator[Mirror]:
    m = Mirror(tmp_path / "mirror")
    m.root.mkdir()
    threading.Thread(target=m.server.serve_forever, daemon=True).start()
    yield m
    m.server.shutdown()
    m.server.server_close()


def _logiqa_urls() -> dict[str, str]:
    return {Path(s.target.dest).name: s.url for s in SOURCES["logiqa"] if s.target}


def test_logiqa_checksum_mismatch_saves_nothing(mirror: Mirror, tmp_path: Path) -> None:
    urls = _logiqa_urls()
    # The real Eval/Test files match their documented sha256; this Train.txt does not.
    mirror.put(urls["Eval.txt"], (SHARED / "logiqa" / "Eval.txt").read_bytes())
    mirror.put(urls["Test.txt"], (SHARED / "logiqa" / "Test.txt").read_bytes())
    mirror.put(urls["Train.txt"], b"\na\nctx\nq?\nA.1\nB.2\nC.3\nD.4")
    dest = tmp_path / "data"
    with pytest.raises(DownloadError, match=r"Train\.txt: sha256 .* differs from the documented "
                                            r"7d5bb1f58278e33b.*nothing was saved"):
        download("logiqa", dest, base_url=mirror.base_url)
    assert not [p for p in dest.rglob("*") if p.is_file()]
    assert mirror.requests[0] == "/raw.githubusercontent.com/lgw863/LogiQA-dataset/master/Train.txt"


def test_logiqa_download_then_loader_uses_full_files(mirror: Mirror, tmp_path: Path) -> None:
    urls = _logiqa_urls()
    train = "\n".join(f"\n{'abcd'[n % 4]}\nContext {n}.\nQ {n}?\nA.w\nB.x\nC.y\nD.z"
                      for n in range(12))
    mirror.put(urls["Train.txt"], train.encode())
    mirror.put(urls["Eval.txt"], (SHARED / "logiqa" / "Eval.txt").read_bytes())
    mirror.put(urls["Test.txt"], (SHARED / "logiqa" / "Test.txt").read_bytes())
    fixture = mirror.root / urls["Train.txt"].split("://", 1)[1]
    sources = [dataclasses.replace(s, target=dataclasses.replace(
        s.target, sha256=sha256_of(fixture))) if s.target and s.target.dest.endswith("Train.txt")
        else s for s in SOURCES["logiqa"]]
    dest = tmp_path / "data"
    got = download("logiqa", dest, base_url=mirror.base_url, sources=sources)
    assert [p.name for p in got] == ["Eval.txt", "Test.txt", "Train.txt"]
    saved = (dest / "logiqa" / "Eval.txt").read_bytes()
    assert saved == (SHARED / "logiqa" / "Eval.txt").read_bytes()
    st = LogiQA().status([dest])
    assert st.complete and [p.size for p in st.pools] == [12, 651, 651]
    # Files already there with the right checksum are not fetched again.
    n = len(mirror.requests)
    assert download("logiqa", dest, base_url=mirror.base_url, sources=sources) == got
    assert len(mirror.requests) == n


def _nli_file(doc_ids: list[int]) -> bytes:
    docs = []
    for i in doc_ids:
        text = f"NDA {i}. The Receiving Party shall not reverse engineer anything."
        docs.append({"id": i, "file_name": f"{i}.pdf", "text": text,
                     "spans": [[0, 7], [8, len(text)]], "document_type": "search-pdf", "url": "",
                     "annotation_sets": [{"annotations": {
                         "nda-11": {"choice": "Entailment", "spans": [1]},
                         "nda-15": {"choice": "NotMentioned", "spans": []}}}]})
    labels = {"nda-11": {"short_description": "No reverse engineering",
                         "hypothesis": "Receiving Party shall not reverse engineer any objects."},
              "nda-15": {"short_description": "No licensing",
                         "hypothesis": "Agreement shall not grant any right."}}
    return json.dumps({"documents": docs, "labels": labels}, indent=2).encode()


def test_contract_nli_zip_is_unpacked_and_verified(mirror: Mirror, tmp_path: Path) -> None:
    files = {"train.json": _nli_file([1, 2, 3]), "dev.json": _nli_file([4, 5]),
             "test.json": _nli_file([6, 7]), "LICENSE": b"CC BY 4.0\n", "TERMS": b"terms\n"}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in files.items():
            z.writestr(f"contract-nli/{name}", data)
        z.writestr("contract-nli/documents/1.pdf", b"%PDF")
    src = SOURCES["contract-nli"][0]
    mirror.put(src.url, buf.getvalue())
    staged = tmp_path / "staged"
    staged.mkdir()
    members = {}
    for name, target in src.members.items():
        (staged / name).write_bytes(files[name])
        # The documented checksums are for the real files; these fixtures get their own.
        members[name] = Target(target.dest, sha256=sha256_of(staged / name)) \
            if target.sha256 else Target(target.dest, git_blob=git_blob_id(staged / name))
    dest = tmp_path / "data"
    got = download("contract-nli", dest, base_url=mirror.base_url,
                   sources=[dataclasses.replace(src, members=members)])
    assert sorted(p.name for p in got) == ["LICENSE", "TERMS", "dev.json", "test.json",
                                           "train.json"]
    assert not (dest / "contract_nli" / "1.pdf").exists()
    st = ContractNLI().status([dest])
    assert st.complete and [p.size for p in st.pools] == [6, 4, 4]
    # With the real documented checksums the same archive is rejected, and nothing is kept.
    other = tmp_path / "other"
    with pytest.raises(DownloadError, match=r"contract-nli\.zip: .*differs from the documented"):
        download("contract-nli", other, base_url=mirror.base_url)
    assert not [p for p in other.rglob("*") if p.is_file()]


def test_stereoset_dev_json_download_is_read(mirror: Mirror, tmp_path: Path) -> None:
    src = SOURCES["stereoset"][0]
    dev = {"version": "1.0-dev", "data": {"intrasentence": [{
        "id": "a" * 32, "target": "chess player", "bias_type": "profession",
        "context": "The chess player was BLANK.",
        "sentences": [{"sentence": f"The chess player was {w}.", "id": w, "labels": [],
                       "gold_label": k}
                      for w, k in (("asian", "stereotype"), ("hispanic", "anti-stereotype"),
                                   ("fox", "unrelated"))]}], "intersentence": []}}
    mirror.put(src.url, json.dumps(dev).encode())
    fixture = mirror.root / src.url.split("://", 1)[1]
    assert src.target is not None and src.target.git_blob
    fake = dataclasses.replace(src, target=Target(src.target.dest, git_blob=git_blob_id(fixture)))
    dest = tmp_path / "data"
    assert download("stereoset", dest, base_url=mirror.base_url, sources=[fake]) == [
        dest / "stereoset" / "dev.json"]
    assert mirror.requests == ["/github.com/moinnadeem/StereoSet/raw/master/data/dev.json"]
    items = StereoSetDomain().pools([dest])[0].items
    assert [it.label for it in items] == ["profession"]
    with pytest.raises(DownloadError, match=r"git blob id .* differs from the documented 637b1e3d"):
        download("stereoset", tmp_path / "again", base_url=mirror.base_url)


def test_git_blob_id_matches_git(tmp_path: Path) -> None:
    p = tmp_path / "f"
    p.write_bytes(b"hello\n")
    assert git_blob_id(p) == "ce013625030ba8dba906f756967f9e9ca394464a"
    shutil.copy(SHARED / "logiqa" / "Eval.txt", tmp_path / "Eval.txt")
    assert git_blob_id(tmp_path / "Eval.txt") == "d1a5dcfec88386cd7892bf207071a716310e2c48"


def test_offline_and_http_errors(mirror: Mirror, tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"
    with pytest.raises(DownloadError, match=r"cannot reach 127\.0\.0\.1:\d+ .*internet") as e:
        download("logiqa", tmp_path / "d", base_url=closed, timeout=5)
    assert "\n" not in str(e.value)
    with pytest.raises(DownloadError, match=r"Train\.txt: HTTP 404"):
        download("logiqa", tmp_path / "d", base_url=mirror.base_url)


def test_nothing_to_download(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for task, why in (("demo", "data/demo"), ("custom", "your own file"),
                      ("nope", "unknown task")):
        with pytest.raises(BadInput, match=why):
            download(task, tmp_path)
    # The environment variable redirects downloads too (and nothing is listening there).
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("PLD_DOWNLOAD_BASE_URL", f"http://127.0.0.1:{port}")
    with pytest.raises(DownloadError, match=f"127.0.0.1:{port}"):
        download("stereoset", tmp_path, timeout=5)
