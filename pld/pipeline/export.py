"""Stage 7, export: a prompt version becomes ``prompt.md`` plus ``manifest.json``.

``prompt.md`` holds the exact system prompt, byte for byte the stored text, so its sha256 equals
the manifest's and evaluating the file reproduces the version's scores. The manifest records
where the prompt came from: the heuristics with who approved them and how that person was
identified, how many rules and examples they were distilled from, which teachers wrote those
rules, and every evaluation stored for this exact prompt text.

A version is only exported while it still stands for what people approved: every heuristic in
it must still be approved and still read as it did when the prompt was built.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pld import __version__
from pld.errors import BadInput
from pld.pipeline.calibrate import list_calibrations
from pld.pipeline.student import PromptVersion, get_prompt, heuristic_item, sha256_text
from pld.review import APPROVED
from pld.tasks.store import task_info
from pld.workspace import Workspace, dumps, loads, now

PROMPT_FILE = "prompt.md"
MANIFEST_FILE = "manifest.json"


class ExportRefused(BadInput):
    """The prompt version no longer matches its approved heuristics."""


@dataclass(frozen=True)
class ExportResult:
    """The two files written and the manifest they describe."""

    prompt_path: Path
    manifest_path: Path
    manifest: dict[str, Any]


def _heuristics(ws: Workspace, ids: list[int]) -> dict[int, dict[str, Any]]:
    rows = ws.query(
        "SELECT * FROM heuristics WHERE id IN (SELECT value FROM json_each(?))", [dumps(ids)]
    )
    return {r["id"]: r for r in rows}


def _in_prompt(item: str, text: str) -> bool:
    # Whole lines only, so that "1. X" does not match inside "11. X" or a longer item.
    return f"\n{item}\n" in f"\n{text}\n"


def check_integrity(prompt: PromptVersion) -> None:
    """:class:`ExportRefused` when the stored prompt text no longer has its stored sha256."""
    if sha256_text(prompt.text) != prompt.sha256:
        raise ExportRefused(f"cannot export {prompt.task} prompt v{prompt.version}: stored text "
                            "does not match its sha256")


def check_exportable(ws: Workspace, prompt: PromptVersion) -> dict[int, dict[str, Any]]:
    """The prompt's heuristic rows; :class:`ExportRefused` when its text does not match its
    sha256, or naming each heuristic that is not currently approved or whose text changed
    since the prompt was built."""
    check_integrity(prompt)
    rows = _heuristics(ws, prompt.heuristic_ids)
    problems = []
    for number, hid in enumerate(prompt.heuristic_ids, 1):
        row = rows.get(hid)
        if row is None:
            problems.append(f"heuristic {hid}: deleted")
            continue
        reasons = []
        if row["status"] != APPROVED:
            reasons.append(f"status is {row['status']}, not approved")
        if not _in_prompt(heuristic_item(number, row["text"] or ""), prompt.text):
            reasons.append("text changed since the prompt was built")
        if reasons:
            problems.append(f"heuristic {hid}: " + " and ".join(reasons))
    if problems:
        raise ExportRefused(
            f"cannot export {prompt.task} prompt v{prompt.version}: " + "; ".join(problems)
            + "; review them and rebuild the prompt"
        )
    return rows


def _sources(ws: Workspace, rule_ids: list[int]) -> dict[str, Any]:
    ids = dumps(sorted(set(rule_ids)))
    counts = ws.query(
        "SELECT count(*) AS rules, count(DISTINCT example_id) AS examples "
        "FROM micro_instructions WHERE id IN (SELECT value FROM json_each(?))",
        [ids],
    )[0]
    teachers = [r["teacher"] for r in ws.query(
        "SELECT DISTINCT teacher FROM micro_instructions "
        "WHERE id IN (SELECT value FROM json_each(?)) AND teacher IS NOT NULL ORDER BY teacher",
        [ids],
    )]
    return {"source_rules": counts["rules"], "source_examples": counts["examples"],
            "teachers": teachers}


def _evaluations(ws: Workspace, task: str, sha: str) -> list[dict[str, Any]]:
    out = []
    for r in ws.query(
        "SELECT * FROM evaluations WHERE task = ? AND prompt_sha256 = ? ORDER BY id", [task, sha]
    ):
        m = loads(r["metrics"], {})
        out.append({
            "id": r["id"], "method": r["method"], "model": r["student"], "split": r["split"],
            "n": r["n"], "prompt_version": r["prompt_version"],
            "macro_f1": m.get("macro_f1"), "accuracy": m.get("accuracy"), "ci": m.get("ci"),
            "n_unparseable": m.get("n_unparseable"), "per_label": m.get("per_label"),
            "top_answer": m.get("top_answer"), "top_answer_share": m.get("top_answer_share"),
            "calibrated": _calibrated(m), "run_id": r["run_id"], "created_at": r["created_at"],
        })
    return out


def _calibrated(m: dict[str, Any]) -> dict[str, Any] | None:
    c, cal = m.get("calibrated"), m.get("calibration") or {}
    if not c:
        return None
    return {"macro_f1": c.get("macro_f1"), "accuracy": c.get("accuracy"), "ci": c.get("ci"),
            "top_answer": c.get("top_answer"), "top_answer_share": c.get("top_answer_share"),
            "calibration_method": cal.get("method"), "bias": cal.get("bias")}


HOW_TO_APPLY = (
    "Add bias[label] to the score of the label's first token before choosing the answer. "
    "On OpenAI, vLLM and llama.cpp servers: logit_bias = {first token id of label: bias[label]} "
    "with the student's tokenizer, at temperature 0, the answer restricted to the labels. "
    "Only differences between labels matter. The bias was fitted for this student only; "
    "logit_bias, where given, is that mapping for the student's own tokenizer."
)


def _calibration(ws: Workspace, prompt: PromptVersion) -> dict[str, Any] | None:
    """The calibration the manifest carries: the one the latest test evaluation of this prompt
    applied (so ``eval --prompt DIR`` reproduces that score), else the latest fitted one."""
    fitted = {c.id: c for c in list_calibrations(ws, prompt.task, prompt.sha256) if c.available}
    if not fitted:
        return None
    chosen = fitted[max(fitted)]
    for r in ws.query("SELECT metrics FROM evaluations WHERE task = ? AND prompt_sha256 = ? "
                      "AND split = 'test' ORDER BY id DESC", [prompt.task, prompt.sha256]):
        used = (loads(r["metrics"], {}).get("calibration") or {}).get("id")
        if used in fitted:
            chosen = fitted[used]
            break
    return {**chosen.summary(), "how_to_apply": HOW_TO_APPLY}


def refusal(ws: Workspace, prompt: PromptVersion) -> str | None:
    """Why ``prompt`` may not be exported (the :class:`ExportRefused` message), or None."""
    try:
        check_exportable(ws, prompt)
    except ExportRefused as e:
        return str(e)
    return None


def prompt_bytes(prompt: PromptVersion) -> bytes:
    """The bytes of ``prompt.md``: the stored text exactly, so its sha256 is the manifest's."""
    return prompt.text.encode("utf-8")


def manifest_bytes(manifest: dict[str, Any]) -> bytes:
    """The bytes of ``manifest.json``: indented UTF-8 JSON with a final newline."""
    return (json.dumps(manifest, ensure_ascii=False, indent=2) + "\n").encode("utf-8")


def build_manifest(ws: Workspace, prompt: PromptVersion) -> dict[str, Any]:
    """The manifest of ``prompt``; :class:`ExportRefused` if it may not be exported."""
    rows = check_exportable(ws, prompt)
    info = task_info(ws, prompt.task)
    heuristics = []
    rule_ids: list[int] = []
    for hid in prompt.heuristic_ids:
        r = rows[hid]
        source = [int(i) for i in loads(r["source_rule_ids"], [])]
        rule_ids.extend(source)
        heuristics.append({
            "id": hid, "text": r["text"], "version": r["version"],
            "approved_by": r["approved_by"], "approved_at": r["approved_at"],
            "identity_kind": r["identity_kind"], "source_rules": len(source),
        })
    sources = _sources(ws, rule_ids)
    evaluations = _evaluations(ws, prompt.task, prompt.sha256)
    return {
        "task": prompt.task,
        "labels": info.labels,
        "description": info.description,
        "version": prompt.version,
        "prompt_file": PROMPT_FILE,
        "prompt_sha256": prompt.sha256,
        "prompt_origin": prompt.origin,
        "parent_version": prompt.parent_version,
        "prompt_created_at": prompt.created_at,
        "heuristics": heuristics,
        "source_rules": sources["source_rules"],
        "source_examples": sources["source_examples"],
        "models": {"teachers": sources["teachers"],
                   "students": sorted({e["model"] for e in evaluations if e["model"]})},
        "evaluations": evaluations,
        "calibration": _calibration(ws, prompt),
        "created_at": now(),
        "pld_version": __version__,
    }


def export(ws: Workspace, task: str, out_dir: str | Path, *,
           version: int | None = None) -> ExportResult:
    """Write ``prompt.md`` and ``manifest.json`` for prompt ``version`` (latest when None)."""
    prompt = get_prompt(ws, task, version)
    manifest = build_manifest(ws, prompt)  # refuses a text that no longer has its sha256
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise BadInput(f"{out}: --out must be a directory")
    out.mkdir(parents=True, exist_ok=True)
    prompt_path, manifest_path = out / PROMPT_FILE, out / MANIFEST_FILE
    # Bytes, not text mode: no newline translation may touch what the sha256 vouches for.
    prompt_path.write_bytes(prompt_bytes(prompt))
    manifest_path.write_bytes(manifest_bytes(manifest))
    return ExportResult(prompt_path, manifest_path, manifest)
