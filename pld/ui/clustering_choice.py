"""How a clustering's method was chosen, for the Clusters page: what ``auto`` tried and why the
kept clustering won, or who chose an explicit method, with the largest cluster's share."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from pld.pipeline.cluster.choose import MAX_SHARE
from pld.pipeline.cluster.read import choice_words, largest_share
from pld.ui.escape import say


def _candidates(auto: dict[str, Any]) -> pd.DataFrame:
    return pd.DataFrame([{
        "clustering tried": c["name"], "clusters": c["n_clusters"],
        "sizes": ", ".join(map(str, c["sizes"])),
        "largest cluster": f"{c['largest_share']:.0%}", "noise": f"{c['noise_share']:.0%}",
        "silhouette": None if c["silhouette"] is None else round(c["silhouette"], 3),
        "why": c["why"],
    } for c in auto.get("candidates") or []])


def choice_panel(c: dict[str, Any]) -> None:
    """The choice of clustering ``c`` (a :func:`~pld.pipeline.cluster.read.get_clustering`
    row): a sentence, a warning when one cluster holds more than 60% of the rules, and for
    ``auto`` the clusterings it tried."""
    params, metrics = c["params"], c["metrics"]
    say("caption", "How it was chosen: " + choice_words(params))
    share = largest_share(metrics)
    if share is not None and share > MAX_SHARE:
        say("warning", f"One cluster holds {share:.0%} of the rules: its heuristic will merge "
                       "most rules into one paragraph, which tends to restate the task. Method "
                       "auto keeps every cluster at or below "
                       f"{MAX_SHARE:.0%}; this one stays because it was chosen explicitly.")
    auto = params.get("auto")
    if auto:
        with st.expander(f"Clusterings auto tried ({len(auto.get('candidates') or [])})"):
            st.dataframe(_candidates(auto), hide_index=True, key="c_candidates",
                         column_config={"why": st.column_config.TextColumn(width="large")})
            st.caption("To override, start a clustering with an explicit method above; it is "
                       "kept as you chose it, even when one cluster holds most rules, and "
                       "recorded as your choice.")
