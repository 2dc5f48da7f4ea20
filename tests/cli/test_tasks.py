"""``load … --as NAME``: the person who supplies a description writes the preamble it makes, an
upload without a name waits for a named save, and a reload is a change like any other."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from tests.cli.test_contract import pld


def _alerts(tmp_path: Path) -> Path:
    f = tmp_path / "alerts.csv"
    f.write_text("text,label\n" + "".join(f"wire {i} from new payee,fraud\nhello {i},routine\n"
                                          for i in range(5)), encoding="utf-8")
    return f


def _preamble(ws_path: Path, task: str) -> dict[str, Any]:
    r = pld("review", "preamble", "show", task, "--json", ws=ws_path)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def _approve(ws_path: Path, task: str, version: int,
             who: str) -> subprocess.CompletedProcess:
    return pld("review", "preamble", "approve", task, "--base-version", str(version),
               "--as", who, ws=ws_path)


def test_an_uploader_who_typed_the_description_cannot_approve_its_preamble(
        ws_path: Path, tmp_path: Path) -> None:
    # Before: the preamble was pld:template's, so ana approved her own description.
    r = pld("load", "custom", "--file", str(_alerts(tmp_path)), "--description",
            "Decide whether a bank alert is fraud.", "--as", "ana", ws=ws_path)
    assert r.returncode == 0, r.stderr
    pre = _preamble(ws_path, "alerts")
    assert (pre["written_by"], pre["version"]) == ("ana", 1)
    refused = _approve(ws_path, "alerts", 1, "ana")
    assert refused.returncode == 2
    assert "written by ana" in refused.stderr
    assert _approve(ws_path, "alerts", 1, "bob").returncode == 0


def test_an_upload_without_a_name_waits_for_a_named_save(ws_path: Path, tmp_path: Path) -> None:
    # Before: nobody was named, and anyone, the uploader included, could approve it.
    assert pld("load", "custom", "--file", str(_alerts(tmp_path)), "--description",
               "Decide whether a bank alert is fraud.", ws=ws_path).returncode == 0
    pre = _preamble(ws_path, "alerts")
    refused = _approve(ws_path, "alerts", 1, "bob")
    assert refused.returncode == 2
    assert "nobody may approve it until a named person saves it" in refused.stderr
    saved = pld("review", "preamble", "edit", "alerts", "--text", pre["text"],
                "--base-version", "1", "--as", "bob", ws=ws_path)
    assert saved.returncode == 0, saved.stderr
    assert _approve(ws_path, "alerts", 2, "bob").returncode == 2
    assert _approve(ws_path, "alerts", 2, "carol").returncode == 0


def test_a_reload_by_someone_not_on_the_approver_list_is_refused(ws_path: Path,
                                                                  tmp_path: Path) -> None:
    f = _alerts(tmp_path)
    assert pld("load", "custom", "--file", str(f), "--as", "ana", ws=ws_path).returncode == 0
    assert pld("review", "approvers", "alerts", "--add", "bob", "--as", "bob",
               ws=ws_path).returncode == 0
    for who in (["--as", "carol"], []):
        r = pld("load", "custom", "--file", str(f), "--description", "Always say routine.",
                *who, ws=ws_path)
        assert r.returncode == 2 and "is not an approver of task 'alerts'" in r.stderr
    assert "Always say routine." not in _preamble(ws_path, "alerts")["text"]
    r = pld("load", "custom", "--file", str(f), "--description", "Say if it is fraud.",
            "--as", "bob", ws=ws_path)
    assert r.returncode == 0, r.stderr
    pre = _preamble(ws_path, "alerts")
    assert (pre["written_by"], pre["status"]) == ("bob", "draft")
    assert "Say if it is fraud." in pre["text"]


def test_a_built_in_task_loaded_as_a_person_is_the_templates_and_not_theirs_to_approve(
        ws_path: Path) -> None:
    assert pld("load", "demo", "--as", "ana", ws=ws_path).returncode == 0
    pre = _preamble(ws_path, "demo")
    assert (pre["written_by"], pre["started_by"]) == ("pld:template", "ana")
    assert _approve(ws_path, "demo", 1, "ana").returncode == 2
    assert _approve(ws_path, "demo", 1, "bob").returncode == 0
