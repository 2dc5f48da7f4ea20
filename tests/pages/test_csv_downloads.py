"""No table offers a download that carries a live spreadsheet formula (issue 23, finding 10).

An uploaded text ``=HYPERLINK("http://x","y")`` (and rules, heuristics, cluster names and call
errors written so) is shown on every page that has a table. Streamlit's own "Download as CSV"
writes it as it is, so the app runs with that export off, and every table holding such a cell
has our own download right under it, whose bytes carry the cell neutralised and quoted.
"""

from __future__ import annotations

import csv
import io
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from streamlit.runtime.media_file_manager import MediaFileManager
from streamlit.testing.v1 import AppTest
from streamlit.testing.v1.element_tree import Block, Node

from pld.pipeline.resolve import loop, state
from tests.fakes.openai_server import FakeOpenAI
from tests.pages.conftest import PAGES_DIR, Populated
from tests.pages.test_conflicts_page import _responder

OpenPage = Callable[..., AppTest]

HOSTILE = '=HYPERLINK("http://x","y")'
NEUTRALISED = "'" + HOSTILE
# What `streamlit run app.py` reads when it starts in the repository (as the README says).
CONFIG = PAGES_DIR.parent / ".streamlit" / "config.toml"
PAGES = ("home", "data", "extract", "clusters", "heuristics", "conflicts", "evaluate",
         "export", "calls")


def _built_in_export_off() -> bool:
    """Whether the app runs with the tables' toolbar download (and cell copy) turned off."""
    return tomllib.loads(CONFIG.read_text())["client"].get("disableDataExport") is True


@pytest.fixture
def downloads(monkeypatch: pytest.MonkeyPatch) -> dict[str, bytes | str]:
    """The bytes of every file a page offers, by the URL its download button points at."""
    saved: dict[str, bytes | str] = {}
    add = MediaFileManager.add

    def spy(self: MediaFileManager, data: bytes | str, mimetype: str, *args: Any,
            **kwargs: Any) -> str:
        url = add(self, data, mimetype, *args, **kwargs)
        saved[url] = data
        return url

    monkeypatch.setattr(MediaFileManager, "add", spy)
    return saved


def _siblings(block: Block) -> Iterator[list[Node]]:
    """The children of ``block`` and of every block inside it, each list in page order."""
    children = [block.children[k] for k in sorted(block.children)]
    yield children
    for child in children:
        if isinstance(child, Block):
            yield from _siblings(child)


def _hostile(node: Node) -> bool:
    frame = node.value  # type: ignore[attr-defined]
    return any(isinstance(v, str) and v.startswith(HOSTILE)
               for column in frame.columns for v in frame[column])


def hostile_tables(at: AppTest, saved: dict[str, bytes | str]) -> int:
    """How many tables of the page show a hostile cell; each must have the built-in download
    off and our own download right under it, with the cell neutralised in its bytes."""
    assert not at.exception, [e.value for e in at.exception]
    found = 0
    for children in _siblings(at._tree):  # main area and sidebar
        for i, node in enumerate(children):
            if node.type != "dataframe" or not _hostile(node):
                continue
            found += 1
            assert _built_in_export_off(), "the toolbar's Download as CSV writes the formula"
            after = children[i + 1] if i + 1 < len(children) else None
            assert after is not None and after.type == "download_button", (
                "no download of our own under the table")
            data = saved[after.proto.url]  # type: ignore[attr-defined]
            text = data if isinstance(data, str) else data.decode()
            cells = [c for row in csv.reader(io.StringIO(text)) for c in row]
            assert any(c.startswith(NEUTRALISED) for c in cells), text[:300]
            assert not any(c.startswith(HOSTILE) for c in cells), text[:300]
            assert '"' + NEUTRALISED.replace('"', '""') in text  # quoted, as OWASP says
    return found


def _upload() -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["message", "category", "ref"])
    writer.writerows([f"{HOSTILE} {i}", "cards" if i % 2 else "loans", f"r{i}"]
                     for i in range(12))
    return out.getvalue().encode()


def test_the_data_page_offers_the_upload_neutralised(
        open_page: OpenPage, app_ws: Path, downloads: dict[str, bytes | str]) -> None:
    at = open_page("data").run()
    at.file_uploader(key="data_upload").set_value(("Hostile.csv", _upload(), "text/csv")).run()
    assert hostile_tables(at, downloads) == 1  # the preview of the file
    at.selectbox(key="data_text_col").set_value("message")
    at.selectbox(key="data_label_col").set_value("category")
    at.selectbox(key="data_id_col").set_value("ref")
    at.button(key="data_load_upload").click().run()
    assert at.session_state["task"] == "hostile"
    assert hostile_tables(at, downloads) == 2  # the preview, and the loaded examples


def _as_if_uploaded(pop: Populated, fake_openai: FakeOpenAI) -> None:
    """``pop`` after a conflict-loop iteration, every text a model, an uploader or a reviewer
    wrote in it beginning with HOSTILE."""
    fake_openai.responder = _responder
    model = fake_openai.model_string()
    with pop.open() as ws:
        summary = loop.resolve(ws, pop.task, model, model, iterations=1, attribution="tfidf")
        assert summary.stop_reason == state.AWAITING_REVIEW
    with pop.open() as ws, ws.write() as db:
        db.execute("UPDATE examples SET text = ? || ' ' || id", [HOSTILE])
        db.execute("UPDATE micro_instructions SET rule = ? || ' ' || id WHERE rule IS NOT NULL",
                   [HOSTILE])
        db.execute("UPDATE heuristics SET text = ? || ' ' || id", [HOSTILE])
        db.execute("UPDATE clusters SET name = ? || ' ' || id", [HOSTILE])
        db.execute("UPDATE llm_calls SET error = ?", [HOSTILE])
        db.execute("UPDATE runs SET error = ?", [HOSTILE])


# Pages whose tables show what an upload, a model or a reviewer wrote without a click.
EXPECTED = {"data", "extract", "clusters", "heuristics", "conflicts", "evaluate", "calls"}


def test_no_page_offers_a_formula_in_a_download(
        open_page: OpenPage, populated_ws: Populated, fake_openai: FakeOpenAI,
        downloads: dict[str, bytes | str]) -> None:
    _as_if_uploaded(populated_ws, fake_openai)
    seen = {}
    for name in PAGES:
        at = open_page(name, task=populated_ws.task, reviewer="dan").run()
        seen[name] = hostile_tables(at, downloads)
    assert {name for name, n in seen.items() if n} >= EXPECTED, seen
