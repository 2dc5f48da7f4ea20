"""Stage 7, export: a prompt version becomes ``prompt.md`` plus ``manifest.json``.

``prompt.md`` is composed from what people approved, not from the editable tables: the preamble
and the heuristic texts recorded in the ``after`` of each one's approval row, whose hashes the
chain vouches for (:mod:`pld.trail`, checked up to them). It must be the stored prompt version
byte for byte, so its sha256 equals the manifest's and evaluating the file reproduces the
version's scores. The manifest records where the prompt came from: the heuristics with who
approved them and how that person was identified, how many rules and examples they were
distilled from, which teachers wrote those rules, and every evaluation stored for this exact
prompt text.

A version is only exported while it still stands for what people approved: the task's preamble
and every heuristic in it must be approved, each by an approval row of the audit trail that made
its current version, with the text that row approved still in the table, that text the one the
trail's last write of the item wrote, by a named writer, and the approver none of the people the
trail records for it (:func:`pld.signoff.check_written`, what verify checks too), and composing
the approved texts must give the prompt's text byte for byte. Otherwise the export is refused,
naming the item. A task that requires OIDC sign-offs refuses any other kind.

The manifest carries approved text only: for the preamble and every heuristic, the text and
who approved it are the approval row's, with that row's id and hash, and who wrote it (written,
started and accepted by, with identity kinds: :class:`~pld.authorship.Authorship`) is what the
trail's last write of that text recorded, plus the trail's head when it was written; its
``description`` is the approved preamble's opening paragraph (:func:`approved_description`),
never the task's current description. Writing the export appends an ``export`` row to the
trail holding the manifest's sha256, so :mod:`pld.pipeline.verify` can prove later that neither
file nor trail was altered, and a line
with the chain's new head to a ledger outside the workspace (:mod:`pld.pipeline.ledger`), so a
later deletion of the trail's newest rows shows. Both files are written atomically (temp file,
then rename) and never through a link.
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
from pld.authorship import Written
from pld.errors import BadInput
from pld.identity import OIDC, Identity
from pld.pipeline import ledger as witness
from pld.pipeline.calibrate import list_calibrations
from pld.pipeline.student import PromptVersion, get_prompt, sha256_text
from pld.preamble import compose, get_preamble
from pld.review_rows import APPROVED, HEURISTIC, PREAMBLE
from pld.served_paths import EXPORTS, confine
from pld.tasks.store import RULES_SLOT, task_info
from pld.workspace import Workspace, dumps, loads, now

PROMPT_FILE = "prompt.md"
MANIFEST_FILE = "manifest.json"


class ExportRefused(BadInput):
    """The prompt version no longer matches its approved heuristics."""


@dataclass(frozen=True)
class ExportResult:
    """The two files written, the manifest they describe and the ledger witnessing them."""

    prompt_path: Path
    manifest_path: Path
    manifest: dict[str, Any]
    ledger_path: Path


@dataclass(frozen=True)
class Signed:
    """One approved item as the trail vouches for it: its approval row (as stored), the item
    that row approved (the row's ``after``, decoded) and the trail's record of who wrote it."""

    approval: dict[str, Any]
    item: dict[str, Any]
    written: Written


@dataclass(frozen=True)
class Approved:
    """What an exportable prompt version is made of, read from the approval rows: the preamble,
    the heuristics in prompt order, and the prompt they compose to."""

    preamble: Signed
    heuristics: list[Signed]
    text: str


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


def _signed(ws: Workspace, entity: str, row: dict[str, Any] | None, name: str,
            oidc_only: bool) -> Signed | str:
    """The approved item ``row`` as its approval row recorded it, or why there is none."""
    if row is None:
        return f"{name}: deleted"
    if row["status"] != APPROVED:
        return f"{name}: status is {row['status']}, not approved"
    found = approval_row(ws, entity, row)
    if found is None:
        return f"{name}: approved without an approval row in the trail"
    item = loads(found["after"], {}) or {}
    if item.get("text") != row["text"]:
        # Someone changed the table without the review (plain SQL): the trail's text counts.
        return (f"{name}: its text in the workspace is not the text trail row {found['id']} "
                "approved (changed outside the review)")
    if oidc_only and found["identity_kind"] != OIDC:
        return (f"{name}: approved by a {found['identity_kind']} identity; this task requires "
                f"OIDC sign-offs")
    try:
        # The same check as approving, against the trail as it stood at the approval: an
        # approval an older PLD Studio (or plain SQL) let through is refused here, not only by
        # verify later.
        written = signoff.check_written(ws, entity, row["id"], item.get("text"), found["who"],
                                        before_row=found["id"])
    except BadInput as e:
        return f"{name}: approved in row {found['id']} by {found['who']}, but {e}"
    assert written is not None  # untracked_ok is off: a missing record raises
    return Signed(found, item, written)


def check_integrity(prompt: PromptVersion) -> None:
    """:class:`ExportRefused` when the stored prompt text no longer has its stored sha256."""
    if sha256_text(prompt.text) != prompt.sha256:
        raise ExportRefused(f"cannot export {prompt.task} prompt v{prompt.version}: stored text "
                            "does not match its sha256")


def _unvouched(ws: Workspace, signed: dict[str, Signed]) -> list[str]:
    """The items whose approval row the chain does not vouch for (checked up to the last of
    them), each naming where the chain breaks."""
    broken = trail.check_chain(ws, upto=max(s.approval["id"] for s in signed.values()))
    if broken is None:
        return []
    return [f"{name}: its approval row {s.approval['id']} is not vouched for by the trail "
            f"(broken at {broken})" for name, s in signed.items()
            if s.approval["id"] >= broken.row_id]


def check_exportable(ws: Workspace, prompt: PromptVersion) -> Approved:
    """What ``prompt`` is made of, from the approval rows; :class:`ExportRefused` when its text
    does not match its sha256, when it has no heuristic (that is the zero-shot baseline), or
    naming the preamble or each heuristic that is not approved by an approval row the chain
    vouches for (by OIDC where the task requires it) with its text still in the table, and
    saying so when the approved texts do not compose to the prompt."""
    check_integrity(prompt)
    if not prompt.heuristic_ids:
        raise ExportRefused(f"cannot export {prompt.task} prompt v{prompt.version}: it has no "
                            "heuristics (it is the zero-shot baseline)")
    rows = _heuristics(ws, prompt.heuristic_ids)
    oidc_only = signoff.requires_oidc(ws, prompt.task)
    found = {"the preamble": _signed(ws, PREAMBLE, get_preamble(ws, prompt.task),
                                     "the preamble", oidc_only)}
    for hid in prompt.heuristic_ids:
        found[f"heuristic {hid}"] = _signed(ws, HEURISTIC, rows.get(hid), f"heuristic {hid}",
                                            oidc_only)
    problems = [why for why in found.values() if isinstance(why, str)]
    signed = {name: s for name, s in found.items() if isinstance(s, Signed)}
    if not problems:
        problems = _unvouched(ws, signed)
    text = ""
    if not problems:
        texts = [signed[f"heuristic {h}"].item["text"] for h in prompt.heuristic_ids]
        try:
            text = compose(signed["the preamble"].item["text"], texts)
        except BadInput as e:
            problems.append(f"the approved texts do not make a prompt ({e})")
        else:
            if text != prompt.text:
                changed = [f"heuristic {h}" for h, t in zip(prompt.heuristic_ids, texts,
                                                            strict=True)
                           if t not in prompt.text] or ["the preamble"]
                problems.append("the approved texts no longer make this prompt ("
                                + ", ".join(changed) + " changed since it was built)")
    if problems:
        raise ExportRefused(
            f"cannot export {prompt.task} prompt v{prompt.version}: " + "; ".join(problems)
            + "; review them and rebuild the prompt"
        )
    return Approved(signed.pop("the preamble"), list(signed.values()), text)


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


def prompt_bytes(ws: Workspace, prompt: PromptVersion) -> bytes:
    """The bytes of ``prompt.md``: the approved texts composed (the stored text exactly, so its
    sha256 is the manifest's); :class:`ExportRefused` if ``prompt`` may not be exported."""
    return check_exportable(ws, prompt).text.encode("utf-8")


def manifest_bytes(manifest: dict[str, Any]) -> bytes:
    """The bytes of ``manifest.json``: indented UTF-8 JSON with a final newline."""
    return (json.dumps(manifest, ensure_ascii=False, indent=2) + "\n").encode("utf-8")


def approved_description(preamble_text: str) -> str:
    """The task description as an approved preamble states it: its opening paragraph (the lines
    before the first blank line or the rules line). For a preamble drafted from the template
    that is the task description it was drafted with."""
    opening: list[str] = []
    for line in preamble_text.strip().split("\n"):
        if not line.strip() or line.strip() == RULES_SLOT:
            break
        opening.append(line)
    return "\n".join(opening).strip()


def _sign_off(s: Signed) -> dict[str, Any]:
    """Who wrote and signed one item of the prompt: the approval as its row recorded it, with
    that row's place in the trail, and the authorship the trail's last write of the approved
    text recorded."""
    a = s.item
    authorship = s.written.authorship
    return {"id": a.get("id"), "text": a["text"], "version": a.get("version"),
            "created_by": a.get("created_by"), **authorship.columns(),
            "authorship": authorship.sentence(),
            "approved_by": a.get("approved_by"), "approved_at": a.get("approved_at"),
            "identity_kind": a.get("identity_kind"),
            "approval": {"row_id": s.approval["id"], "row_hash": s.approval["row_hash"]}}


def build_manifest(ws: Workspace, prompt: PromptVersion) -> dict[str, Any]:
    """The manifest of ``prompt``; :class:`ExportRefused` if it may not be exported."""
    return _manifest(ws, prompt, check_exportable(ws, prompt))


def _manifest(ws: Workspace, prompt: PromptVersion, approved: Approved) -> dict[str, Any]:
    head = trail.head(ws)
    heuristics = []
    rule_ids: list[int] = []
    for s in approved.heuristics:
        source = [int(i) for i in s.item.get("source_rule_ids") or []]
        rule_ids.extend(source)
        heuristics.append({**_sign_off(s), "source_rules": len(source)})
    sources = _sources(ws, rule_ids)
    evaluations = _evaluations(ws, prompt.task, prompt.sha256)
    return {
        "task": prompt.task,
        "labels": task_info(ws, prompt.task).labels,
        "description": approved_description(approved.preamble.item["text"]),
        "version": prompt.version,
        "prompt_file": PROMPT_FILE,
        "prompt_sha256": prompt.sha256,
        "prompt_origin": prompt.origin,
        "parent_version": prompt.parent_version,
        "prompt_created_at": prompt.created_at,
        "prompt_built_by": prompt.built_by,
        "preamble": _sign_off(approved.preamble),
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
           who: Identity | None = None, ledger: str | Path | None = None) -> ExportResult:
    """Write ``prompt.md`` and ``manifest.json`` for prompt ``version`` (latest when None),
    record the export in the trail as ``who`` (``pld:cli`` when nobody is named) and append the
    chain's new head to ``ledger`` (default: :func:`pld.pipeline.ledger.default_path`)."""
    # The same confinement as the app's: under $PLD_ROOT/exports when a server sets PLD_ROOT.
    out = confine(out_dir, "the export folder", EXPORTS)
    actor = who or Identity.system("cli")
    prompt = get_prompt(ws, task, version)
    approved = check_exportable(ws, prompt)  # refuses anything the trail does not vouch for
    manifest = _manifest(ws, prompt, approved)
    if out.is_symlink():
        raise BadInput(f"{out}: --out is a symbolic link; give the real folder")
    if out.exists() and not out.is_dir():
        raise BadInput(f"{out}: --out must be a directory")
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)  # first, so that an unusable --out is named as such
    try:
        # Opened before any file: a ledger that cannot be written refuses the export.
        book = witness.Ledger(witness.default_path(out) if ledger is None else ledger)
    except BadInput:
        if created:
            out.rmdir()
        raise
    with book:
        prompt_path, manifest_path = out / PROMPT_FILE, out / MANIFEST_FILE
        data = manifest_bytes(manifest)
        # Bytes, not text mode: no newline translation may touch what the sha256 vouches for.
        _write_atomic(prompt_path, approved.text.encode("utf-8"))
        _write_atomic(manifest_path, data)
        where = str(out.resolve())
        head = record_export(ws, prompt, data, who=actor, where=where)
        book.append(witness.entry(
            ws, task=prompt.task, version=prompt.version, head=head,
            manifest_sha256=sha256_bytes(data), prompt_sha256=prompt.sha256, out=where,
            who=actor.name))
    return ExportResult(prompt_path, manifest_path, manifest, book.path)


def record_export(ws: Workspace, prompt: PromptVersion, manifest_data: bytes, *,
                  who: Identity | None = None, where: str) -> trail.Link:
    """Append the ``export`` row that lets :mod:`pld.pipeline.verify` recognise this manifest
    (its sha256), as ``who`` (``pld:cli`` when nobody is named); the chain's new head.
    ``where``: the folder written, or ``download`` for the app's download buttons."""
    with ws.write() as db:
        return review_rows.audit(
            db, who or Identity.system("cli"), "export", prompt.id, "export", None,
            {"task": prompt.task, "version": prompt.version, "prompt_sha256": prompt.sha256,
             "manifest_sha256": sha256_bytes(manifest_data), "out": where}, None)


def sha256_bytes(data: bytes) -> str:
    """The hex sha256 of ``data`` (the digest the trail keeps of a manifest)."""
    return hashlib.sha256(data).hexdigest()
