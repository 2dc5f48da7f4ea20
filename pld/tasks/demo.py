"""The in-house demo task: triage of messages reaching a bank's compliance desk.

The data (``data/demo/compliance_desk.jsonl``, written for PLD Studio, see its README) ships with
the repository, so the app works with no download at all. It is read with the same validation
as a user's custom file.
"""

from __future__ import annotations

from pathlib import Path

from pld.errors import BadInput
from pld.tasks.base import DataDir, Pool, TaskStatus
from pld.tasks.custom import CustomTask

DEMO_FILE = Path(__file__).resolve().parents[2] / "data" / "demo" / "compliance_desk.jsonl"
DEMO_LABELS = ["escalate-fraud", "data-privacy-request", "complaint", "routine"]


class DemoTask(CustomTask):
    """Compliance-desk triage: 4 labels, about a hundred short messages."""

    name = "demo"
    kind = "demo"
    description = (
        "Compliance-desk triage (in-house demo). Each item is a customer message or an agent's "
        "note that reached the compliance desk of a retail bank. Label it escalate-fraud "
        "(signs of fraud, scams, account takeover, unauthorised transactions or money-mule "
        "activity: the fraud team must act now), data-privacy-request (the customer exercises "
        "a data-protection right: access, copy, erasure, correction, objection to processing "
        "or marketing, data portability), complaint (dissatisfaction with the bank's service, "
        "fees, staff or decisions, with no fraud and no data-rights request), or routine (an "
        "ordinary service request or question). When a message fits several, the first of "
        "that order wins: escalate-fraud, then data-privacy-request, then complaint."
    )

    def __init__(self, path: str | Path | None = None) -> None:
        super().__init__(path or DEMO_FILE, name="demo", id_column="id")
        self.labels = list(DEMO_LABELS)

    @property
    def task_description(self) -> str:
        """The framing paragraph (not the generic custom one)."""
        return self.description

    def pools(self, data_dir: DataDir = None) -> list[Pool]:
        """One pool: the demo file; its labels must be exactly the demo label set."""
        pools = super().pools()
        found = set(self.labels)
        if found != set(DEMO_LABELS):
            raise BadInput(f"{self.path}: labels {sorted(found)} differ from the demo labels "
                           f"{DEMO_LABELS}")
        self.labels = list(DEMO_LABELS)
        return pools

    def status(self, data_dir: DataDir = None) -> TaskStatus:
        """Always available: the file is part of the repository."""
        st = super().status()
        if st.available:
            st.notes = (f"in-house demo data shipped in data/demo/ ({st.pools[0].size} items), "
                        "no download needed")
        return st
