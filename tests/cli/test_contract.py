"""The CLI contract: commands, ``--json`` output and exit codes (0 ok, 2 bad input, 1 failure).

These run the real ``python -m pld`` in a subprocess, as a user or an outside check would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pld.pipeline.student import build_prompt
from pld.workspace import Workspace
from tests.fakes.openai_server import FakeOpenAI

ROOT = Path(__file__).resolve().parents[2]


def pld(*args: str, ws: Path, env: dict[str, str] | None = None,
        timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``python -m pld --workspace WS ARGS`` and return the finished process."""
    return subprocess.run(
        [sys.executable, "-m", "pld", "--workspace", str(ws), *args],
        capture_output=True, text=True, cwd=ROOT, timeout=timeout,
        env={**os.environ, "PLD_RETRY_BASE_S": "0.01", "PLD_RETRY_MAX_S": "0.05",
             **(env or {})},
    )


def test_tasks_json_lists_every_builtin_task_with_split_sizes(ws_path: Path) -> None:
    r = pld("tasks", "--json", ws=ws_path)
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    names = [t["name"] for t in data["tasks"]]
    assert names == ["stereoset", "stereoset-stereotype", "contract-nli", "logiqa", "custom",
                     "demo"]
    by = {t["name"]: t for t in data["tasks"]}
    assert by["demo"]["split_sizes"] == {"train": 50, "val": 20, "test": 30}
    assert "partial" in by["logiqa"]["notes"]


def test_load_demo_then_tasks_shows_it_loaded(ws_path: Path) -> None:
    r = pld("load", "demo", "--json", ws=ws_path)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["splits"] == {"train": 50, "val": 20, "test": 30}
    data = json.loads(pld("tasks", "--json", ws=ws_path).stdout)
    assert data["loaded"]["demo"]["splits"] == {"train": 50, "val": 20, "test": 30}


@pytest.mark.parametrize("args", [
    ["load", "nonexistent-task"],
    ["load", "custom"],
    ["ask", "nosuchprovider/x", "hi"],
    ["ask", "local/huge", "hi"],
    ["extract", "demo", "--teacher", "local/default"],  # task not loaded
    ["eval", "demo", "--student", "local/default"],  # no method chosen
    ["--workspace", "/proc/nope/ws.db", "tasks"],  # its folder cannot be created
    ["load", "demo", "--context-tokens", "500"],  # only contract-nli has an input budget
    ["load", "contract-nli", "--context-tokens", "10"],  # too small to hold a hypothesis
])
def test_bad_input_exits_2_with_one_line(ws_path: Path, args: list[str]) -> None:
    r = pld(*args, ws=ws_path)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert r.stderr.startswith("error: ") or "Error:" in r.stderr
    assert "Traceback" not in r.stderr


def test_bad_custom_file_exits_2_naming_the_row_and_imports_nothing(
    ws_path: Path, tmp_path: Path
) -> None:
    f = tmp_path / "alerts.csv"
    f.write_text("text,label\nwire from new payee,fraud\n,fraud\nhello,routine\n",
                 encoding="utf-8")
    r = pld("load", "custom", "--file", str(f), ws=ws_path)
    assert r.returncode == 2
    assert "alerts.csv line 3" in r.stderr and "text" in r.stderr
    data = json.loads(pld("tasks", "--json", ws=ws_path).stdout)
    assert data["loaded"] == {}


def test_load_custom_without_column_flags_guesses_and_says_why(
    ws_path: Path, tmp_path: Path
) -> None:
    f = tmp_path / "tickets.csv"
    areas = ["billing", "onboarding", "mobile app"]
    f.write_text("ticket_id,complaint,product_area\n" + "".join(
        f"T-{i},The trial was supposed to end on day {i} but I was charged anyway,"
        f"{areas[i % 3]}\n" for i in range(12)), encoding="utf-8")
    r = pld("load", "custom", "--file", str(f), "--json", ws=ws_path)
    assert r.returncode == 0, r.stderr
    assert "label: product_area, 3 values" in r.stderr and "id: ticket_id, unique" in r.stderr
    columns = json.loads(r.stdout)["columns"]
    assert {k: columns[k] for k in ("text", "label", "id")} == {
        "text": "complaint", "label": "product_area", "id": "ticket_id"}
    # The mapping the analyst first chose: the error names the column it read labels from.
    r = pld("load", "custom", "--file", str(f), "--name", "wrong", "--text-column",
            "ticket_id", "--label-column", "complaint", ws=ws_path)
    assert r.returncode == 2
    assert "label: complaint (given)" in r.stderr
    assert "the label column 'complaint'" in r.stderr
    assert "'complaint' does not look like a label column" in r.stderr


def test_load_custom_takes_the_description_the_upload_form_takes(
    ws_path: Path, tmp_path: Path
) -> None:
    import sqlite3

    f = tmp_path / "alerts.csv"
    f.write_text("text,label\n" + "".join(f"wire {i} from new payee,fraud\nhello {i},routine\n"
                                          for i in range(5)), encoding="utf-8")
    r = pld("load", "custom", "--file", str(f), "--description",
            "Decide whether a bank alert is fraud.", ws=ws_path)
    assert r.returncode == 0, r.stderr
    with sqlite3.connect(ws_path) as db:
        [desc] = db.execute("SELECT description FROM tasks WHERE name = 'alerts'").fetchone()
    assert desc == "Decide whether a bank alert is fraud."
    r = pld("load", "demo", "--description", "x", ws=ws_path)
    assert r.returncode == 2 and "only for custom tasks" in r.stderr


def test_load_contract_nli_with_a_smaller_input_budget(ws_path: Path) -> None:
    import sqlite3

    r = pld("load", "contract-nli", "--context-tokens", "300", "--train", "4", "--val", "2",
            "--test", "2", ws=ws_path)
    assert r.returncode == 0, r.stderr
    with sqlite3.connect(ws_path) as db:
        [params] = db.execute("SELECT params FROM tasks WHERE name = 'contract-nli'").fetchone()
        texts = [t for (t,) in db.execute("SELECT text FROM examples")]
    assert json.loads(params)["context_tokens"] == 300
    # NDAs are far longer than 300 tokens: every input is shortened, and says so.
    assert all("[Excerpt: " in t and "the rest omitted]" in t for t in texts)


def test_stage_before_its_inputs_exits_2(ws_path: Path) -> None:
    assert pld("load", "demo", ws=ws_path).returncode == 0
    r = pld("cluster", "demo", ws=ws_path)
    assert r.returncode == 2 and "extract" in r.stderr
    r = pld("cluster", "demo", "--eps", "7", ws=ws_path)
    assert r.returncode == 2 and "eps" in r.stderr


def test_non_sqlite_workspace_exits_2_untouched(tmp_path: Path) -> None:
    p = tmp_path / "notes.txt"
    p.write_text("my notes\n")
    r = pld("tasks", ws=p)
    assert r.returncode == 2 and "not an SQLite file" in r.stderr
    assert p.read_text() == "my notes\n"


def test_ask_goes_through_cache_and_log(ws_path: Path) -> None:
    with FakeOpenAI(responder=lambda body: "pong") as fake:
        model = fake.model_string()
        first = json.loads(pld("ask", model, "ping", "--json", ws=ws_path).stdout)
        second = json.loads(pld("ask", model, "ping", "--json", ws=ws_path).stdout)
        assert first["text"] == second["text"] == "pong"
        assert not first["cache_hit"] and second["cache_hit"]
        assert len(fake.requests) == 1
    calls = json.loads(pld("calls", "--json", ws=ws_path).stdout)
    assert calls["total"]["calls"] == 2 and calls["total"]["cache_hits"] == 1


def test_failed_call_exits_1(ws_path: Path) -> None:
    with FakeOpenAI() as fake:
        for _ in range(5):
            fake.add_fault("status", 503)
        r = pld("ask", fake.model_string(), "ping", ws=ws_path,
                env={"PLD_MAX_ATTEMPTS": "2"})
    assert r.returncode == 1 and "LLM call failed" in r.stderr
    calls = json.loads(pld("calls", "--json", ws=ws_path).stdout)
    assert calls["total"]["errors"] == 2


def _call_rows(ws: Path) -> list[dict[str, object]]:
    import sqlite3

    with sqlite3.connect(ws) as db:
        db.row_factory = sqlite3.Row
        return [dict(r) for r in db.execute("SELECT * FROM llm_calls ORDER BY id")]


def test_ask_without_api_key_exits_2_and_logs_the_error(ws_path: Path) -> None:
    r = pld("ask", "anthropic/claude-test", "hi", ws=ws_path, env={"ANTHROPIC_API_KEY": ""})
    assert r.returncode == 2, r.stderr
    assert r.stderr.count("\n") == 1 and "ANTHROPIC_API_KEY is not set" in r.stderr
    [row] = _call_rows(ws_path)
    assert row["model"] == "anthropic/claude-test" and row["cache_hit"] == 0
    assert "ANTHROPIC_API_KEY is not set" in str(row["error"])


def test_extract_without_api_key_exits_2_and_stores_no_failed_rules(ws_path: Path) -> None:
    """A setup error is not a failed example: nothing is stored as failed, the CLI says why."""
    assert pld("load", "demo", ws=ws_path).returncode == 0
    r = pld("extract", "demo", "--teacher", "anthropic/claude-test", "--limit", "3",
            "--concurrency", "1", ws=ws_path, env={"ANTHROPIC_API_KEY": ""})
    assert r.returncode == 2, r.stderr
    assert "ANTHROPIC_API_KEY is not set" in r.stderr and "Traceback" not in r.stderr
    import sqlite3

    with sqlite3.connect(ws_path) as db:
        assert db.execute("SELECT count(*) FROM micro_instructions").fetchone()[0] == 0
        [status] = db.execute("SELECT status FROM runs WHERE kind = 'extract'").fetchone()
    assert status == "failed"
    # Workers already started may each log their attempt before the stage stops.
    rows = _call_rows(ws_path)
    assert rows and all(row["stage"] == "extract" and "ANTHROPIC_API_KEY" in str(row["error"])
                        for row in rows)


@pytest.mark.parametrize(("var", "value"), [
    ("PLD_LLM_TIMEOUT", "abc"), ("PLD_MAX_ATTEMPTS", "many"), ("PLD_MAX_ATTEMPTS", "0"),
    ("PLD_RETRY_BASE_S", "fast"), ("PLD_RETRY_MAX_S", "-1"),
])
def test_bad_number_in_the_environment_exits_2_naming_it(
    ws_path: Path, var: str, value: str
) -> None:
    # Nothing listens on port 9: the setting must be refused before any request.
    r = pld("ask", "openai-compatible/m@http://127.0.0.1:9/v1", "hi", ws=ws_path,
            env={var: value})
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith(f"error: {var}={value!r}") and r.stderr.count("\n") == 1


def test_review_edit_with_a_non_utf8_file_exits_2_naming_it(
    ws_path: Path, tmp_path: Path
) -> None:
    f = tmp_path / "heuristic.txt"
    f.write_bytes("If the invoice is overdue, label it billing \u2013 always.".encode("cp1252"))
    r = pld("review", "edit", "1", "--file", str(f), "--base-version", "1", "--as", "bob",
            ws=ws_path)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and f"--file {f}: not UTF-8" in r.stderr


def test_export_to_an_unwritable_out_exits_2_naming_it(ws: Workspace, tmp_path: Path) -> None:
    from tests.pipeline.test_export import TASK, _setup

    _setup(ws)
    build_prompt(ws, TASK)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder\n")
    out = blocker / "export"
    r = pld("export", TASK, "--out", str(out), ws=ws.path)
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith(f"error: --out {out}: cannot write") and "Traceback" not in r.stderr
    assert blocker.read_text() == "not a folder\n"


def _uncached(ws: Path) -> int:
    return int(json.loads(pld("calls", "--json", ws=ws).stdout)["total"]["uncached"])


def test_rerun_leaves_failed_examples_failed_until_retry_failed(ws_path: Path) -> None:
    assert pld("load", "demo", ws=ws_path).returncode == 0
    reply = json.dumps({"reasoning": "It asks for a refund.",
                        "rule": "If the text asks for money back, then the label is complaint."})
    with FakeOpenAI(responder=lambda body: reply) as fake:
        for _ in range(2):
            fake.add_fault("status", 500)
        args = ["extract", "demo", "--teacher", fake.model_string(), "--limit", "2",
                "--concurrency", "1", "--json"]
        first = json.loads(pld(*args, ws=ws_path, env={"PLD_MAX_ATTEMPTS": "1"}).stdout)
        assert (first["done"], first["failed"]) == (0, 2)
        assert _uncached(ws_path) == 2  # two error rows: uncached calls all the same

        again = json.loads(pld(*args, ws=ws_path).stdout)
        assert (again["done"], again["failed"], again["failed_before"]) == (0, 0, 2)
        assert _uncached(ws_path) == 2 and len(fake.requests) == 2

        r = pld(*args[:-1], "--retry-failed", ws=ws_path)
        assert r.returncode == 0, r.stderr
        assert "2/2 rules" in r.stdout and len(fake.requests) == 4


def _heuristic(ws: Workspace, hid: int) -> dict[str, object]:
    return ws.query("SELECT text, version, status FROM heuristics WHERE id = ?", [hid])[0]


def test_review_edit_requires_the_version_it_is_based_on(ws: Workspace) -> None:
    from tests.pipeline.test_student import add_heuristic, load_reviews

    load_reviews(ws)
    hid = add_heuristic(ws, "If the review says good, then the label is pos.", status="draft")
    r = pld("review", "edit", str(hid), "--text", "new text", "--as", "bob", ws=ws.path)
    assert r.returncode == 2, r.stderr
    assert "--base-version is required" in r.stderr and f"review show {hid}" in r.stderr
    assert _heuristic(ws, hid)["version"] == 1

    r = pld("review", "edit", str(hid), "--text", "new text", "--base-version", "1",
            "--as", "bob", ws=ws.path)
    assert r.returncode == 0, r.stderr
    assert _heuristic(ws, hid) == {"text": "new text", "version": 2, "status": "draft"}


@pytest.mark.parametrize("action", ["approve", "reject"])
def test_review_approve_and_reject_refuse_a_stale_base_version(
    ws: Workspace, action: str
) -> None:
    from tests.pipeline.test_student import add_heuristic, load_reviews

    load_reviews(ws)
    hid = add_heuristic(ws, "If the review says bad, then the label is neg.", status="draft")
    other = add_heuristic(ws, "If the review says okay, then the label is neutral.",
                          status="draft")
    assert pld("review", "edit", str(hid), "--text", "changed", "--base-version", "1",
               "--as", "bob", ws=ws.path).returncode == 0

    stale = pld("review", action, str(hid), "--base-version", "1", "--as", "alice", ws=ws.path)
    assert stale.returncode == 2 and "changed since your version 1" in stale.stderr
    assert _heuristic(ws, hid)["status"] == "draft"
    mismatch = pld("review", action, str(hid), str(other), "--base-version", "2",
                   "--as", "alice", ws=ws.path)
    assert mismatch.returncode == 2 and "one --base-version per heuristic id" in mismatch.stderr

    ok = pld("review", action, str(hid), str(other), "--base-version", "2",
             "--base-version", "1", "--as", "alice", ws=ws.path)
    assert ok.returncode == 0, ok.stderr
    expected = "approved" if action == "approve" else "rejected"
    assert _heuristic(ws, hid)["status"] == _heuristic(ws, other)["status"] == expected


class _InFlight:
    """A fake student that answers from the text's keyword and records peak parallel calls."""

    def __init__(self) -> None:
        import threading

        self.lock = threading.Lock()
        self.now = self.peak = 0

    def __call__(self, body: dict[str, object]) -> str:
        import time

        with self.lock:
            self.now += 1
            self.peak = max(self.peak, self.now)
        time.sleep(0.3)  # long enough for every worker of the pool to be in flight at once
        with self.lock:
            self.now -= 1
        text = str(body["messages"][-1]["content"])  # type: ignore[index]
        return next((label for word, label in (("good", "pos"), ("bad", "neg"))
                     if word in text), "neutral")


@pytest.mark.parametrize("k", [1, 3])
def test_eval_and_resolve_take_concurrency(ws: Workspace, k: int) -> None:
    from tests.pipeline.test_student import RULES, add_heuristic, load_reviews

    load_reviews(ws, n_val=6, n_test=6)
    for rule in RULES:
        add_heuristic(ws, rule)
    student = _InFlight()
    with FakeOpenAI(responder=student) as fake:
        model = fake.model_string()
        r = pld("eval", "reviews", "--student", model, "--zero-shot", "--concurrency", str(k),
                "--json", ws=ws.path)
        assert r.returncode == 0, r.stderr
        assert student.peak == k
        student.peak = 0
        r = pld("resolve", "reviews", "--student", model, "--teacher", model, "--iterations",
                "1", "--concurrency", str(k), "--json", ws=ws.path)
        assert r.returncode == 0, r.stderr
        assert student.peak == k and json.loads(r.stdout)["stop_reason"] == "no-errors"
    r = pld("eval", "reviews", "--student", model, "--zero-shot", "--concurrency", "0",
            ws=ws.path)
    assert r.returncode == 2 and "--concurrency" in r.stderr
