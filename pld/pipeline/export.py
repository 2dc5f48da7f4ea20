"""Stage 7, export: a prompt version becomes ``prompt.md`` plus ``manifest.json``.

``prompt.md`` holds the exact system prompt, byte for byte the stored text, so its sha256 equals
the manifest's and evaluating the file reproduces the version's scores. The manifest records
where the prompt came from: the heuristics with who approved them and how that person was
identified, how many rules and examples they were distilled from, which teachers wrote those
rules, and every evaluation stored for this exact prompt text.

A version is only exported while it still stands for what people approved: the task's preamble
and every heuristic in it must be approved, each by an approval row of the audit trail that made
its current version, and composing the approved preamble with the approved heuristic texts must
give the prompt's text byte for byte. A task that requires OIDC sign-offs refuses any other kind.

The manifest names, for the preamble and every heuristic, who created it, who last wrote it and
who approved it, with the id and hash of that approval row in the trail, plus the trail's head
when it was written. Writing the export appends an ``export`` row to the trail holding the
manifest's sha256, so :mod:`pld.pipeline.verify` can prove later that neither file nor trail was
altered. Both files are written atomically (temp file, then rename) and never through a link.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pld import __version__, review_rows, signoff, trail
from pld.errors import BadInput
from pld.identity import OIDC, Identity
from pld.pipeline.calibrate import list_calibrations
from pld.pipeline.student import PromptVersion, get_prompt, sha256_text
from pld.preamble import compose, get_preamble
from pld.review_rows import APPROVED, HEURISTIC, PREAMBLE
from pld.served_paths import EXPORTS, confine
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


def approval_row(ws: Workspace, entity: str, row: dict[str, Any]) -> dict[str, Any] | None:
    """The trail's ``approve`` row that made ``row``'s current version, or None when its
    status was set some other way (which no export accepts)."""
    got = ws.query("SELECT * FROM reviews WHERE entity = ? AND entity_id = ? "
                   "AND action = 'approve' ORDER BY id DESC LIMIT 1", [entity, row["id"]])
    if not got or loads(got[0]["after"], {}).get("version") != row["version"]:
        return None
    return got[0]


def _sign_off_problems(ws: Workspace, entity: str, row: dict[str, Any] | None, name: str,
                       oidc_only: bool) -> list[str]:
    if row is None:
        return [f"{name}: deleted"]
    if row["status"] != APPROVED:
        return [f"{name}: status is {row['status']}, not approved"]
    found = approval_row(ws, entity, row)
    if found is None:
        return [f"{name}: approved without an approval row in the trail"]
    if oidc_only and found["identity_kind"] != OIDC:
        return [f"{name}: approved by a {found['identity_kind']} identity; this task requires "
                f"OIDC sign-offs"]
    return []


def check_integrity(prompt: PromptVersion) -> None:
    """:class:`ExportRefused` when the stored prompt text no longer has its stored sha256."""
    if sha256_text(prompt.text) != prompt.sha256:
        raise ExportRefused(f"cannot export {prompt.task} prompt v{prompt.version}: stored text "
                            "does not match its sha256")


def check_exportable(ws: Workspace, prompt: PromptVersion) -> dict[int, dict[str, Any]]:
    """The prompt's heuristic rows; :class:`ExportRefused` when its text does not match its
    sha256, when it has no heuristic (that is the zero-shot baseline), or naming the preamble
    or each heuristic that is not approved by an approval row (by OIDC where the task requires
    it), and saying so when the approved texts no longer compose to the prompt."""
    check_integrity(prompt)
    if not prompt.heuristic_ids:
        raise ExportRefused(f"cannot export {prompt.task} prompt v{prompt.version}: it has no "
                            "heuristics (it is the zero-shot baseline)")
    rows = _heuristics(ws, prompt.heuristic_ids)
    oidc_only = signoff.requires_oidc(ws, prompt.task)
    preamble = get_preamble(ws, prompt.task)
    problems = _sign_off_problems(ws, PREAMBLE, preamble, "the preamble", oidc_only)
    for hid in prompt.heuristic_ids:
        problems += _sign_off_problems(ws, HEURISTIC, rows.get(hid), f"heuristic {hid}",
                                       oidc_only)
    if not problems:
        assert preamble is not None
        texts = [rows[h]["text"] for h in prompt.heuristic_ids]
        if compose(preamble["text"], texts) != prompt.text:
            changed = [f"heuristic {h}" for h in prompt.heuristic_ids
                       if rows[h]["text"] not in prompt.text] or ["the preamble"]
            problems.append("the approved texts no longer make this prompt ("
                            + ", ".join(changed) + " changed since it was built)")
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


def _sign_off(ws: Workspace, entity: str, r: dict[str, Any]) -> dict[str, Any]:
    """Who made and signed one item of the prompt, with the approval's place in the trail."""
    row = approval_row(ws, entity, r)
    assert row is not None  # check_exportable refused otherwise
    return {"id": r["id"], "text": r["text"], "version": r["version"],
            "created_by": r["created_by"], "last_edited_by": r["updated_by"],
            "approved_by": r["approved_by"], "approved_at": r["approved_at"],
            "identity_kind": r["identity_kind"],
            "approval": {"row_id": row["id"], "row_hash": row["row_hash"]}}


def build_manifest(ws: Workspace, prompt: PromptVersion) -> dict[str, Any]:
    """The manifest of ``prompt``; :class:`ExportRefused` if it may not be exported."""
    rows = check_exportable(ws, prompt)
    info = task_info(ws, prompt.task)
    preamble = get_preamble(ws, prompt.task)
    assert preamble is not None
    head = trail.head(ws)
    heuristics = []
    rule_ids: list[int] = []
    for hid in prompt.heuristic_ids:
        r = rows[hid]
        source = [int(i) for i in loads(r["source_rule_ids"], [])]
        rule_ids.extend(source)
        heuristics.append({**_sign_off(ws, HEURISTIC, r), "source_rules": len(source)})
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
        "prompt_built_by": prompt.built_by,
        "preamble": _sign_off(ws, PREAMBLE, preamble),
        "heuristics": heuristics,
        "require_oidc": signoff.requires_oidc(ws, prompt.task),
        "trail": {"head_row_id": head.id, "head_hash": head.hash},
        "source_rules": sources["source_rules"],
        "source_examples": sources["source_examples"],
        "models": {"teachers": sources["teachers"],
                   "students": sorted({e["model"] for e in evaluations if e["model"]})},
        "evaluations": evaluations,
        "calibration": _calibration(ws, prompt),
        "created_at": now(),
        "pld_version": __version__,
    }


def _write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temp file in the same folder and a rename, so a
    reader never sees half a file; a link at ``path`` is refused, never followed."""
    if path.is_symlink():
        raise BadInput(f"{path}: is a symbolic link; refusing to write an export through it")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def export(ws: Workspace, task: str, out_dir: str | Path, *, version: int | None = None,
           who: Identity | None = None) -> ExportResult:
    """Write ``prompt.md`` and ``manifest.json`` for prompt ``version`` (latest when None) and
    record the export in the trail as ``who`` (``pld:cli`` when nobody is named)."""
    # The same confinement as the app's: under $PLD_ROOT/exports when a server sets PLD_ROOT.
    out = confine(out_dir, "the export folder", EXPORTS)
    prompt = get_prompt(ws, task, version)
    manifest = build_manifest(ws, prompt)  # refuses a text that no longer has its sha256
    if out.is_symlink():
        raise BadInput(f"{out}: --out is a symbolic link; give the real folder")
    if out.exists() and not out.is_dir():
        raise BadInput(f"{out}: --out must be a directory")
    out.mkdir(parents=True, exist_ok=True)
    prompt_path, manifest_path = out / PROMPT_FILE, out / MANIFEST_FILE
    data = manifest_bytes(manifest)
    # Bytes, not text mode: no newline translation may touch what the sha256 vouches for.
    _write_atomic(prompt_path, prompt_bytes(prompt))
    _write_atomic(manifest_path, data)
    record_export(ws, prompt, data, who=who, where=str(out.resolve()))
    return ExportResult(prompt_path, manifest_path, manifest)


def record_export(ws: Workspace, prompt: PromptVersion, manifest_data: bytes, *,
                  who: Identity | None = None, where: str) -> None:
    """Append the ``export`` row that lets :mod:`pld.pipeline.verify` recognise this manifest
    (its sha256), as ``who`` (``pld:cli`` when nobody is named). ``where``: the folder written,
    or ``download`` for the app's download buttons."""
    with ws.write() as db:
        review_rows.audit(db, who or Identity.system("cli"), "export", prompt.id, "export", None,
                          {"task": prompt.task, "version": prompt.version,
                           "prompt_sha256": prompt.sha256,
                           "manifest_sha256": sha256_bytes(manifest_data), "out": where}, None)


def sha256_bytes(data: bytes) -> str:
    """The hex sha256 of ``data`` (the digest the trail keeps of a manifest)."""
    return hashlib.sha256(data).hexdigest()
