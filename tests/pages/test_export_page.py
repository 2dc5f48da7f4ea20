"""The Export page: preview and write an approved prompt version; refuse one whose heuristics
are no longer approved, with the reason and nothing to download."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

from pld import review
from pld.identity import Identity
from pld.pipeline import student
from pld.pipeline.verify import verify
from pld.tasks import load_task
from pld.ui.tables import KEY_PREFIX
from pld.workspace import open_workspace
from tests.conftest import approve_seen
from tests.pages.conftest import Populated, unescaped

OpenPage = Callable[..., AppTest]


def _texts(elements: Any) -> str:
    """What the elements say as a reader sees it (messages are shown escaped)."""
    return unescaped("\n".join(str(e.value) for e in elements))


def _file_downloads(at: AppTest) -> list[Any]:
    """The prompt's and the manifest's download buttons (not the tables' CSV downloads)."""
    return [b for b in at.download_button if not (b.key or "").startswith(KEY_PREFIX)]


def test_empty_workspace_says_to_load_a_task(open_page: OpenPage) -> None:
    at = open_page("export")
    at.run()
    assert not at.exception
    assert [t.value for t in at.title] == ["Export"]
    assert "No task is loaded" in _texts(at.info)


def test_task_without_prompt_versions(open_page: OpenPage, app_ws: Path) -> None:
    with open_workspace(app_ws) as ws:
        load_task(ws, "demo")
    at = open_page("export", task="demo")
    at.run()
    assert not at.exception
    assert "has no prompt version yet" in _texts(at.info)
    assert at.button(key="x_build").disabled  # nothing approved to build from


def test_preview_download_and_write(open_page: OpenPage, populated_ws: Populated,
                                    tmp_path: Path) -> None:
    with populated_ws.open() as ws:
        prompt = student.get_prompt(ws, populated_ws.task, populated_ws.prompt_version)
    at = open_page("export", task=populated_ws.task)
    at.run()
    assert not at.exception
    assert at.selectbox(key="x_version").value == prompt.version
    assert prompt.text in [c.value for c in at.code]
    assert f"sha256 {prompt.sha256}" in _texts(at.caption)
    assert not at.error
    assert not any(b.disabled for b in _file_downloads(at))
    assert not at.button(key="x_write").disabled
    out = tmp_path / "out"
    at.text_input(key=f"x_out_demo_v{prompt.version}").input(str(out))
    at.button(key="x_write").click().run()
    assert not at.exception
    assert "Wrote" in _texts(at.success)
    assert (out / "prompt.md").read_bytes() == prompt.text.encode("utf-8")
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["prompt_sha256"] == prompt.sha256
    assert [h["id"] for h in manifest["heuristics"]] == populated_ws.approved_heuristic_ids
    assert {h["approved_by"] for h in manifest["heuristics"]} == {"bea"}


def test_refused_when_a_heuristic_is_no_longer_approved(open_page: OpenPage,
                                                        populated_ws: Populated) -> None:
    hid = populated_ws.approved_heuristic_ids[0]
    with populated_ws.open() as ws:
        review.reject(ws, hid, Identity("carl"), comment="misleads the student")
    at = open_page("export", task=populated_ws.task)
    at.run()
    assert not at.exception
    errors = _texts(at.error)
    assert "Refused" in errors and f"heuristic {hid}: status is rejected" in errors
    assert all(b.disabled for b in _file_downloads(at))
    assert at.button(key="x_write").disabled
    assert "No manifest" in _texts(at.caption)


def test_build_a_new_version_after_approving(open_page: OpenPage,
                                             populated_ws: Populated) -> None:
    draft = populated_ws.heuristic_ids[3]
    with populated_ws.open() as ws:
        approve_seen(ws, draft, Identity("bea"))
    at = open_page("export", task=populated_ws.task, reviewer="ana")
    at.run()
    at.button(key="x_build").click().run()
    assert not at.exception
    assert "Prompt v2 holds 4 approved heuristics." in _texts(at.success)
    assert at.selectbox(key="x_version").value == 2
    with populated_ws.open() as ws:
        assert student.get_prompt(ws, populated_ws.task, 2).heuristic_ids == [
            *populated_ws.approved_heuristic_ids, draft]


def test_refused_when_the_stored_text_no_longer_has_its_sha256(open_page: OpenPage,
                                                               populated_ws: Populated) -> None:
    with populated_ws.open() as ws, ws.write() as db:
        db.execute("UPDATE prompts SET text = text || ' (tampered)' WHERE task = ? AND "
                   "version = ?", [populated_ws.task, populated_ws.prompt_version])
    at = open_page("export", task=populated_ws.task)
    at.run()
    assert not at.exception
    assert "stored text does not match its sha256" in _texts(at.error)
    assert all(b.disabled for b in _file_downloads(at))
    assert at.button(key="x_write").disabled


def test_default_folder_follows_the_chosen_version(open_page: OpenPage,
                                                  populated_ws: Populated,
                                                  tmp_path: Path) -> None:
    with populated_ws.open() as ws:
        approve_seen(ws, populated_ws.heuristic_ids[3], Identity("bea"))
        assert student.build_prompt(ws, populated_ws.task).version == 2
    at = open_page("export", task=populated_ws.task)
    at.run()
    assert at.selectbox(key="x_version").value == 2
    assert at.text_input(key="x_out_demo_v2").value == str(Path("data/exports/demo-v2"))
    at.selectbox(key="x_version").set_value(1).run()
    assert at.text_input(key="x_out_demo_v1").value == str(Path("data/exports/demo-v1"))
    # Writing uses the folder shown for the chosen version.
    out = tmp_path / "v1"
    at.text_input(key="x_out_demo_v1").input(str(out))
    at.button(key="x_write").click().run()
    assert not at.exception and not at.error
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["version"] == 1


def test_a_served_app_writes_only_under_its_exports_folder(
        open_page: OpenPage, populated_ws: Populated, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Before: any folder typed into the page was written to.
    root = populated_ws.path.parent
    monkeypatch.setenv("PLD_ROOT", str(root))
    at = open_page("export", task=populated_ws.task, reviewer="ana")
    at.run()
    key = f"x_out_demo_v{populated_ws.prompt_version}"
    assert at.text_input(key=key).value == str(root / "exports" / "demo-v1")
    outside = tmp_path.parent / "not-the-team"
    at.text_input(key=key).input(str(outside)).run()
    at.button(key="x_write").click().run()
    assert "must be inside" in _texts(at.error)
    assert not outside.exists()
    at.text_input(key=key).input(str(root / "exports" / "demo-v1")).run()
    at.button(key="x_write").click().run()
    assert not at.exception and "Wrote" in _texts(at.success)
    with populated_ws.open() as ws:
        rows = ws.query("SELECT who, after FROM reviews WHERE entity = 'export'")
        result = verify(ws, root / "exports" / "demo-v1")
    assert [r["who"] for r in rows] == ["ana"]  # the export is in the trail with who
    assert result.ok, result.broken



def test_a_relative_folder_is_reported_by_its_full_path(
        open_page: OpenPage, populated_ws: Populated, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Before: "Wrote data/exports/demo-v1/prompt.md …", relative to a folder the reviewer
    # may not know (where the server was started).
    monkeypatch.chdir(tmp_path)
    at = open_page("export", task=populated_ws.task, reviewer="ana").run()
    at.text_input(key=f"x_out_demo_v{populated_ws.prompt_version}").input("data/exports/mine")
    at.button(key="x_write").click().run()
    assert not at.exception
    full = tmp_path / "data" / "exports" / "mine"
    assert (full / "prompt.md").is_file()
    said = unescaped(_texts(at.success))
    assert f"Wrote {full / 'prompt.md'} and {full / 'manifest.json'}." in said
