"""What both benchmark scripts share: the machine block, merged JSON results, token counting,
a small table printer and a scripted fake teacher/student for the fake OpenAI-compatible server.

Benchmarks are scripts, not tests: run them from the repository root (``python bench/speed.py``);
this module puts the root on ``sys.path`` so that ``pld`` and ``tests.fakes`` import.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import sqlite3
import statistics
import subprocess
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

RESULTS = REPO / "bench" / "results"
# Scratch workspaces (SQLite files, ignored by git through *.db): kept between runs so that a
# rerun resumes from the workspace and its LLM call cache.
WORK = REPO / "bench" / ".work"
PACKAGES = ("xllamacpp", "torch", "streamlit", "sentence-transformers")


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (``platform.processor()`` elsewhere)."""
    m = re.search(r"^model name\s*:\s*(.+)$", _read("/proc/cpuinfo"), re.M)
    return m.group(1).strip() if m else (platform.processor() or "unknown")


def ram_gib() -> float | None:
    """Total RAM in GiB from /proc/meminfo, None where that file does not exist."""
    m = re.search(r"^MemTotal:\s*(\d+) kB", _read("/proc/meminfo"), re.M)
    return round(int(m.group(1)) / 2**20, 1) if m else None


def package_versions(names: Sequence[str] = PACKAGES) -> dict[str, str | None]:
    """Installed versions of ``names`` (None when a package is not installed)."""
    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True,
                               timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def machine_info(models: dict[str, Any]) -> dict[str, Any]:
    """The ``machine`` block every result file carries: hardware, software, models, date.

    The load average is recorded because the numbers of a busy machine are not those of a quiet
    one.
    """
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return {
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "ram_gib": ram_gib(),
        "cpu_model": cpu_model(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "packages": package_versions(),
        "models": models,
        "local_threads": os.environ.get("PLD_LOCAL_THREADS") or "all cores",
        "local_n_ctx": os.environ.get("PLD_LOCAL_N_CTX") or "8192 (default)",
        "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()],
        "git_commit": _git("rev-parse", "--short", "HEAD"),
        "git_dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
        "date": now(),
    }


def now() -> str:
    """UTC timestamp, ISO-8601 to the second."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def read_json(path: Path) -> dict[str, Any]:
    """A results file as a dict ({} when it does not exist yet)."""
    if not path.exists():
        return {}
    return json.loads(path.read_text())


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` atomically (a ``.tmp`` sibling, then rename): an interrupted benchmark never
    leaves a half-written results file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def merge_json(path: Path, update: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """Read ``path``, let ``update`` change the dict in place, write it back; return it."""
    data = read_json(path)
    update(data)
    write_json(path, data)
    return data


def replace_block(path: Path, name: str, body: str) -> bool:
    """Replace the text between ``<!-- NAME:start -->`` and ``<!-- NAME:end -->`` in ``path``
    (the README's result tables); False when the file or the markers are missing."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    if not path.exists():
        return False
    text = path.read_text()
    if start not in text or end not in text:
        return False
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    path.write_text(f"{head}{start}\n{body}\n{end}{tail}")
    return True


def median(xs: Sequence[float]) -> float:
    """The median of a non-empty sequence."""
    return float(statistics.median(xs))


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """A plain fixed-width table on stdout."""
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    for n, r in enumerate(cells):
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
        if n == 0:
            print("  ".join("-" * w for w in widths))


# -- tokens ---------------------------------------------------------------------------------------

@lru_cache(maxsize=4)
def _backend(name: str) -> Any:
    from pld.llm.local_backend import LocalBackend

    return LocalBackend(name, role="bench-tokens")


def count_rows(path: Path, sql: str) -> int:
    """The count ``sql`` returns from the workspace at ``path``, which a child process may be
    writing meanwhile (its own read-only use of a connection); 0 before the tables exist."""
    con = sqlite3.connect(str(path), timeout=30)
    try:
        return int(con.execute(sql).fetchone()[0])
    except sqlite3.OperationalError:
        return 0  # the child has not created the tables yet
    finally:
        con.close()


def count_tokens(text: str, local_name: str = "default") -> tuple[int, str]:
    """Tokens of ``text`` and how they were counted.

    The embedded model's own tokenizer (Qwen2.5) when its weights are available, else
    ``len(text) / 4`` — an estimate, said so in the second element.
    """
    try:
        return _backend(local_name).count_tokens(text), \
            f"qwen2.5 tokenizer (local/{local_name} GGUF)"
    except Exception:  # no runtime or no weights: estimate instead
        return round(len(text) / 4), "estimate: characters / 4"


# -- a scripted teacher and student for the fake OpenAI-compatible server ------------------------

def _schema_keys(body: dict[str, Any]) -> set[str]:
    fmt = body.get("response_format") or {}
    schema = (fmt.get("json_schema") or {}).get("schema") or fmt.get("schema") or {}
    return set(schema.get("properties") or {})


def _last_user(body: dict[str, Any]) -> str:
    # A request cut off by a killed client arrives without a body: answer it with nothing.
    users = [m.get("content", "") for m in body.get("messages", []) if m.get("role") == "user"]
    return str(users[-1]) if users else ""


def scripted_reply(labels: Sequence[str]) -> Callable[[dict[str, Any]], str]:
    """A deterministic responder that plays every role of the chain, told apart by the JSON
    schema asked for: extract (a rule ending in the gold label), consolidate (one heuristic
    covering the labels named), resolve (one ``add`` proposal, so the loop really builds and
    evaluates a new prompt version) and the student (a stable pseudo-random label)."""
    labels = list(labels)

    def reply(body: dict[str, Any]) -> str:
        keys = _schema_keys(body)
        user = _last_user(body)
        if {"reasoning", "rule"} <= keys:
            m = re.search(r"Gold label: (\S+)", user)
            gold = m.group(1) if m else labels[0]
            return json.dumps({"reasoning": "The message shows the deciding feature.",
                               "rule": f"If the message is mainly about {gold} matters, then "
                                       f"the label is {gold}."})
        if "heuristic" in keys:
            found = [lab for lab in labels if lab in user] or labels[:1]
            text = " ".join(f"If the message is mainly about {lab} matters, answer {lab}."
                            for lab in found)
            return json.dumps({"heuristic": text, "labels_covered": found})
        if "proposals" in keys:
            focus = re.search(r"rule #?(\d+)", user)
            n = focus.group(1) if focus else "0"
            return json.dumps({"proposals": [{
                "kind": "add", "text": f"If the message repeats a request already made "
                                       f"(see rule {n}), keep the label of the first request.",
                "rationale": "Repeated requests were misread.", "evidence": []}]})
        digest = hashlib.sha256(user.encode("utf-8")).digest()[0]
        return labels[digest % len(labels)]

    return reply


# Realistic heuristics for the demo task (compliance-desk triage), used to build long student
# prompts for the prefix-cache measurement. Written in the style consolidation produces.
DEMO_HEURISTICS = [
    "If the message reports money leaving an account that the customer did not authorise, "
    "including card payments, transfers or direct debits they do not recognise, answer "
    "escalate-fraud, even when the customer also complains about how the bank handled it.",
    "If someone contacted the customer pretending to be the bank, the police, a delivery firm or "
    "a utility and asked for codes, passwords, card details or remote access to a device, answer "
    "escalate-fraud.",
    "If an agent's note says a customer is being coached on what to say, is sending money to a "
    "person they met online, or is moving funds for someone else in return for a fee, answer "
    "escalate-fraud (possible scam victim or money mule).",
    "If the customer says they can no longer log in because the password, phone number or email "
    "on the account was changed without their knowledge, answer escalate-fraud (account "
    "takeover).",
    "If the customer asks for a copy of all the personal data the bank holds about them, or for "
    "the recordings, notes or decisions made about them, answer data-privacy-request.",
    "If the customer asks the bank to delete, erase or stop keeping their personal data, or to "
    "close their profile and forget them, answer data-privacy-request unless fraud is also "
    "reported.",
    "If the customer objects to their data being used for marketing, profiling or credit "
    "scoring, or withdraws consent to such use, answer data-privacy-request.",
    "If the customer asks for their data in a machine-readable file to take it to another "
    "provider, or to correct personal details the bank holds wrongly, answer "
    "data-privacy-request.",
    "If the customer is unhappy with a fee, a charge, an interest rate change or a decision the "
    "bank made and wants it reviewed, reversed or explained, with no sign of fraud and no data "
    "request, answer complaint.",
    "If the message criticises staff behaviour, waiting times, branch closures, app outages or "
    "the way a previous request was handled, answer complaint.",
    "If the customer threatens to leave the bank, go to the ombudsman or post a bad review "
    "because of how they were treated, answer complaint.",
    "If the message asks how to do an ordinary task (order a card, update an address, raise an "
    "overdraft limit, find an IBAN, book an appointment) and expresses no dissatisfaction, "
    "answer routine.",
    "If the message asks for product information such as interest rates, opening hours, "
    "account features or eligibility, answer routine.",
    "If an agent's note records a request that was handled normally after security checks, with "
    "no concern raised, answer routine.",
    "When a message fits several labels, the first in this order wins: escalate-fraud, "
    "data-privacy-request, complaint, routine. A complaint about a fraud investigation is still "
    "escalate-fraud while money is at risk.",
    "A request to know what data was shared with a third party, or with whom, is "
    "data-privacy-request, not complaint, even when the tone is angry.",
]
