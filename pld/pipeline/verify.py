"""Verify an export: prove that ``prompt.md`` is exactly what the people its manifest names
approved, from the workspace's hash-chained trail (:mod:`pld.trail`).

The checks, in order; the first that fails is the answer:

1. ``prompt.md`` has the manifest's sha256.
2. The trail is intact: every row's hash matches its content and the row before it.
3. With a ledger (:mod:`pld.pipeline.ledger`): every chain head it witnessed for this workspace
   is still in the chain with its hash, so no newest rows were deleted after those exports.
4. The manifest is the one an export wrote: the trail holds an ``export`` row with its sha256.
5. The trail head the manifest names is in the chain with the same hash.
6. The preamble and every heuristic has its approval row in the chain, before the head, by the
   person and identity kind the manifest names, for the text and version it lists; the
   authorship the manifest names (written, started, accepted by, with kinds) is the one the
   trail's last write of that text recorded (:func:`pld.signoff.check_written`), a named
   author wrote it, and the approver is none of those people nor the one who made that write
   (OIDC where the manifest or the trail up to its head required it); nothing changed the
   item between that approval and the export; the manifest's description is the approved
   preamble's.
7. The approved texts, composed, are ``prompt.md`` byte for byte.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pld import review_rows, trail
from pld.authorship import COLUMNS
from pld.errors import BadInput
from pld.identity import OIDC, normalize_name
from pld.pipeline import ledger as witness
from pld.pipeline.export import MANIFEST_FILE, PROMPT_FILE, approved_description, sha256_bytes
from pld.preamble import compose
from pld.signoff import check_written, oidc_in_trail
from pld.workspace import Workspace, loads


@dataclass
class Verification:
    """The outcome: ``ok`` with the checks that passed, or the first ``broken`` link."""

    export_dir: str
    checks: list[str] = field(default_factory=list)
    broken: str | None = None

    @property
    def ok(self) -> bool:
        return self.broken is None


class _Broken(Exception):
    pass


def _read(export_dir: Path) -> tuple[bytes, bytes, dict[str, Any]]:
    prompt_path, manifest_path = export_dir / PROMPT_FILE, export_dir / MANIFEST_FILE
    for p in (prompt_path, manifest_path):
        if not p.is_file():
            raise BadInput(f"{p}: not found; give the folder that export wrote")
    prompt, raw = prompt_path.read_bytes(), manifest_path.read_bytes()
    try:
        manifest = json.loads(raw)
    except (ValueError, RecursionError) as e:
        raise _Broken(f"{manifest_path}: not valid JSON ({e})") from None
    if not isinstance(manifest, dict):
        raise _Broken(f"{manifest_path}: not a JSON object")
    return prompt, raw, manifest


def _field(manifest: dict[str, Any], *keys: str) -> Any:
    value: Any = manifest
    for k in keys:
        if not isinstance(value, dict) or k not in value:
            raise _Broken(f"{MANIFEST_FILE}: has no {'.'.join(keys)}")
        value = value[k]
    return value


def _export_row(ws: Workspace, manifest_sha: str) -> dict[str, Any]:
    for row in ws.query("SELECT * FROM reviews WHERE entity = 'export' AND action = 'export' "
                        "ORDER BY id DESC"):
        if loads(row["after"], {}).get("manifest_sha256") == manifest_sha:
            return row
    raise _Broken(f"{MANIFEST_FILE}: its sha256 {manifest_sha[:12]}… matches no export in the "
                  "workspace's trail (the manifest was edited, or comes from another workspace)")


def _check_authorship(ws: Workspace, name: str, entity: str, item: dict[str, Any],
                      approval: dict[str, Any], approver: str) -> None:
    """The authorship checks of step 6, against the trail's record of who wrote the approved
    text, never the mutable table: the same check as approving and export
    (:func:`pld.signoff.check_written`), then the manifest's authorship against it."""
    try:
        written = check_written(ws, entity, approval["entity_id"], item.get("text"), approver,
                                before_row=approval["id"])
    except BadInput as e:
        raise _Broken(f"{name}: approved in row {approval['id']} by {approver}, but {e}") \
            from None
    assert written is not None  # untracked_ok is off: a missing record raises
    recorded = written.authorship
    # A manifest written before authorship had its fields names none of them.
    named = any(c in item for c in COLUMNS)
    if named and {c: item.get(c) for c in COLUMNS} != recorded.columns():
        raise _Broken(f"{name}: the manifest's authorship is not the one trail row "
                      f"{written.row_id} recorded ({recorded.sentence()})")


def _check_item(ws: Workspace, entity: str, item: dict[str, Any], head_id: int,
                oidc_only: bool) -> str:
    """The approved text of one manifest item, after every check of step 5."""
    name = f"the preamble (#{item.get('id')})" if entity == review_rows.PREAMBLE \
        else f"heuristic {item.get('id')}"
    approval = item.get("approval") or {}
    row = trail.get_row(ws, int(approval.get("row_id") or 0))
    if row is None or row["row_hash"] != approval.get("row_hash"):
        raise _Broken(f"{name}: its approval row {approval.get('row_id')} is not in the trail "
                      "with the hash the manifest names")
    if (row["entity"], row["entity_id"], row["action"]) != (entity, item.get("id"), "approve"):
        raise _Broken(f"{name}: trail row {row['id']} is not its approval")
    if row["id"] > head_id:
        raise _Broken(f"{name}: its approval row {row['id']} comes after the export's head")
    after = loads(row["after"], {})
    if after.get("text") != item.get("text") or after.get("version") != item.get("version"):
        raise _Broken(f"{name}: the manifest's text or version is not what row {row['id']} "
                      "approved")
    who = normalize_name(row["who"])
    if (who != normalize_name(item.get("approved_by") or "")
            or row["identity_kind"] != item.get("identity_kind")):
        raise _Broken(f"{name}: the manifest says approved by {item.get('approved_by')} "
                      f"({item.get('identity_kind')}); row {row['id']} says {row['who']} "
                      f"({row['identity_kind']})")
    _check_authorship(ws, name, entity, item, row, who)
    if oidc_only and row["identity_kind"] != OIDC:
        raise _Broken(f"{name}: the task requires OIDC sign-offs; row {row['id']} is "
                      f"{row['identity_kind']}")
    later = ws.query("SELECT id, action, who FROM reviews WHERE entity = ? AND entity_id = ? "
                     "AND id > ? AND id <= ? ORDER BY id LIMIT 1",
                     [entity, item.get("id"), row["id"], head_id])
    if later:
        raise _Broken(f"{name}: changed after its approval (row {later[0]['id']}: "
                      f"{later[0]['action']} by {later[0]['who']}) and before the export")
    return str(after["text"])


def verify(ws: Workspace, export_dir: str | Path,
           ledger: str | Path | None = None) -> Verification:
    """Run every check on the export in ``export_dir`` against ``ws``'s trail, and against the
    ledger at ``ledger`` when given (:class:`BadInput` when there is no such file)."""
    out = Verification(str(export_dir))
    try:
        _verify(ws, Path(export_dir), out.checks, ledger)
    except _Broken as e:
        out.broken = str(e)
    return out


def _verify(ws: Workspace, export_dir: Path, checks: list[str],
            ledger: str | Path | None) -> None:
    prompt, raw, manifest = _read(export_dir)
    if sha256_bytes(prompt) != _field(manifest, "prompt_sha256"):
        raise _Broken(f"{PROMPT_FILE}: its sha256 {sha256_bytes(prompt)[:12]}… is not the "
                      f"manifest's {str(manifest['prompt_sha256'])[:12]}… (the prompt was "
                      "edited)")
    checks.append(f"{PROMPT_FILE} has the manifest's sha256")
    broken = trail.check_chain(ws)
    if broken is not None:
        raise _Broken(f"the trail is broken at {broken}")
    checks.append(f"the trail's {trail.head(ws).id} rows are an intact hash chain")
    if ledger is not None:
        witnessed = witness.check(ws, ledger, sha256_bytes(raw))
        if witnessed.broken is not None:
            raise _Broken(witnessed.broken)
        checks.append(f"the {witnessed.checked} chain heads the ledger {ledger} witnessed for "
                      "this workspace are still in the chain")
    export_row = _export_row(ws, sha256_bytes(raw))
    checks.append(f"{MANIFEST_FILE} is the one export row {export_row['id']} recorded")
    head_id, head_hash = _field(manifest, "trail", "head_row_id"), _field(manifest, "trail",
                                                                          "head_hash")
    head = trail.get_row(ws, int(head_id)) if head_id else None
    if head_id and (head is None or head["row_hash"] != head_hash):
        raise _Broken(f"the manifest's trail head (row {head_id}) is not in the chain with "
                      "its hash")
    checks.append(f"the manifest's trail head, row {head_id}, is in the chain")
    # The trail's word, not only the manifest's: an export made while the table's flag was
    # lifted by plain SQL says false.
    oidc_only = bool(manifest.get("require_oidc")) or oidc_in_trail(
        ws, str(manifest.get("task")), int(head_id or 0))
    preamble = _check_item(ws, review_rows.PREAMBLE, _field(manifest, "preamble"), head_id,
                           oidc_only)
    if manifest.get("description") != approved_description(preamble):
        raise _Broken(f"{MANIFEST_FILE}: its description is not the approved preamble's")
    texts = [_check_item(ws, review_rows.HEURISTIC, h, head_id, oidc_only)
             for h in _field(manifest, "heuristics")]
    checks.append(f"the preamble and {len(texts)} heuristics were approved by someone outside "
                  "the authorship the trail records for them, and unchanged until the export; "
                  "the description is the approved preamble's")
    try:
        composed = compose(preamble, texts).encode("utf-8")
    except BadInput as e:
        raise _Broken(f"the approved texts do not make a prompt: {e}") from None
    if composed != prompt:
        raise _Broken(f"{PROMPT_FILE}: is not the approved preamble with the approved "
                      "heuristics")
    checks.append(f"{PROMPT_FILE} is the approved preamble with the approved heuristics, "
                  "byte for byte")
