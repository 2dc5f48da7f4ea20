"""The Evaluate page's confusion matrix and the wrong items it selects
(:mod:`pld.pipeline.eval_errors`): a click on a cell sets the gold and answer filters of the
list below it, and the rows shown download as CSV (:mod:`pld.ui.tables`).

Item texts, replies and labels come from uploads and models: they are shown in dataframe cells
and selectboxes (plain text), in Markdown only through :func:`~pld.ui.escape.literal`, and in
the chart only through :func:`~pld.ui.escape.hover`.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

from pld.metrics import UNPARSEABLE
from pld.pipeline.eval_errors import wrong_items
from pld.ui.escape import hover, literal
from pld.ui.tables import untrusted_table
from pld.workspace import Workspace


def filter_keys(eval_id: int) -> tuple[str, str]:
    """The session keys of the gold and answer filters of evaluation ``eval_id``'s list."""
    return f"e_err_gold_{eval_id}", f"e_err_answer_{eval_id}"


def chart_key(eval_id: int, view: str) -> str:
    """The key of the confusion matrix of ``eval_id`` in ``view`` (its click selection)."""
    return f"e_cm_{eval_id}_{view.lower()}"


def confusion_chart(eval_id: int, cm: dict[str, Any], view: str) -> None:
    """The confusion matrix ``cm`` of one view (raw or calibrated answers); clicking a cell
    selects its gold label and answer in the wrong items below, clearing the selection
    clears them."""
    key = chart_key(eval_id, view)
    # Labels come from the uploader's file; Plotly reads tick and hover text as HTML.
    golds, answers = [hover(r) for r in cm["rows"]], [hover(c) for c in cm["columns"]]
    fig = px.imshow(cm["matrix"], x=answers, y=golds, text_auto=True,
                    color_continuous_scale="Blues", aspect="auto",
                    labels={"x": "predicted", "y": "gold", "color": "items"})
    # Streamlit reports no selection for a heatmap cell (streamlit#8760), so an invisible
    # marker at the centre of each cell takes the click; its customdata says which cell it is.
    # A click goes to the nearest marker, which is the one of the cell clicked: markers must
    # stay smaller than a cell (overlapping ones tie, and a neighbour could win), and the
    # heatmap must never be nearer (its hover distance is the layout's hoverdistance).
    cells = [(i, j) for i in range(len(golds)) for j in range(len(answers))]
    fig.add_trace(go.Scatter(
        x=[answers[j] for _, j in cells], y=[golds[i] for i, _ in cells], mode="markers",
        customdata=[[i, j, cm["matrix"][i][j]] for i, j in cells], showlegend=False,
        marker={"symbol": "square", "opacity": 0, "size": 4},
        hovertemplate="gold %{y}<br>predicted %{x}<br>items %{customdata[2]}<extra></extra>"))
    # The counts are written in the cells: no colour scale beside them, the cells get its room.
    fig.update_layout(height=360, margin={"t": 30, "b": 10}, hoverdistance=10_000,
                      coloraxis_showscale=False, title=f"Confusion matrix ({view.lower()})")
    # Autorange would leave room for the markers beside the cells: the axes span the cells
    # exactly (gold reads downwards, as imshow draws it).
    fig.update_xaxes(range=[-0.5, len(answers) - 0.5], autorange=False)
    fig.update_yaxes(range=[len(golds) - 0.5, -0.5], autorange=False)

    def picked() -> None:
        points = st.session_state[key]["selection"]["points"]
        cell = (points[0].get("customdata") or [None, None]) if points else [None, None]
        gold_key, answer_key = filter_keys(eval_id)
        st.session_state[gold_key] = cm["rows"][cell[0]] if cell[0] is not None else None
        st.session_state[answer_key] = (cm["columns"][cell[1]] if cell[1] is not None
                                        else None)

    st.plotly_chart(fig, key=key, on_select=picked, selection_mode="points")
    st.caption("Click a cell to list its items under Wrong items.")


def _choice(key: str, options: list[str | None], label: str, column: Any) -> str | None:
    # A value left from the other view (an unparseable column it lacks) falls back to all.
    if st.session_state.get(key) not in options:
        st.session_state[key] = None
    return column.selectbox(label, options, key=key,
                            format_func=lambda v: "all" if v is None else v)


def _frame(errors: list[dict[str, Any]], labels: list[str], calibrated: bool) -> pd.DataFrame:
    rows = []
    for e in errors:
        row = {"example": e["example_id"], "item": e["item"], "gold": e["gold"],
               "raw": e["raw"] if e["raw"] is not None else UNPARSEABLE}
        if calibrated:
            row["calibrated"] = e["calibrated"] if e["calibrated"] is not None else UNPARSEABLE
        row |= {"text": e["text"], "reply": e["reply"]}
        row |= {f"score {label}": (e["scores"] or {}).get(label) for label in labels}
        rows.append(row)
    columns = ["example", "item", "gold", "raw", *(["calibrated"] if calibrated else []),
               "text", "reply", *(f"score {label}" for label in labels)]
    return pd.DataFrame(rows, columns=columns)


def wrong_items_section(ws: Workspace, ev: dict[str, Any], cm: dict[str, Any],
                        judged_by: str) -> None:
    """The items evaluation ``ev`` got wrong by its ``judged_by`` answers (those of the
    confusion matrix ``cm`` beside it), filtered by gold and answer, with a CSV download."""
    st.markdown("**Wrong items**")
    gold_key, answer_key = filter_keys(ev["id"])
    c1, c2 = st.columns(2)
    gold = _choice(gold_key, [None, *cm["rows"]], "Gold", c1)
    answer = _choice(answer_key, [None, *cm["columns"]], f"Answer ({judged_by})", c2)
    found = wrong_items(ws, ev["id"], gold=gold, answer=answer, judged_by=judged_by)
    which = (f" with gold {literal(gold)}" if gold is not None else "") + (
        f" answered {literal(answer)}" if answer is not None else "")
    st.caption(f"{len(found.errors)} wrong item(s){which} of the {found.n} scored, judged by "
               f"the {judged_by} answers. Scores are each label's log-probability.")
    if not found.errors:
        st.info("Gold and answer agree in this cell: those items are right." if
                gold is not None and gold == answer else "No wrong items here.")
        return
    frame = _frame(found.errors, found.labels, found.calibrated)
    untrusted_table(frame, f"evaluation-{ev['id']}-wrong-items.csv",
                    column_config={c: st.column_config.NumberColumn(format="%.3f")
                                   for c in frame.columns if c.startswith("score ")})
