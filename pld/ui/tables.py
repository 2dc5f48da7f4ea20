"""Tables whose cells hold text from uploads, models or reviewers, and their CSV download.

Streamlit's own "Download as CSV" (the table toolbar's) only quotes separators: a cell that
begins with ``=`` would reach the reviewer's spreadsheet as a live formula. Streamlit has no
switch per table, so the built-in export is off for the whole app (``client.disableDataExport``
in ``.streamlit/config.toml``, which also stops copying cells to the clipboard), and
:func:`untrusted_table` offers each table's rows through :mod:`pld.csv_export` instead.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from pld.csv_export import csv_text

DOWNLOAD_LABEL = "Download these rows (CSV)"
KEY_PREFIX = "_pld_csv_"  # the keys of the tables' download buttons


def table_csv(frame: pd.DataFrame) -> str:
    """``frame``'s columns and rows (not its index) as a CSV safe to open in a spreadsheet."""
    return csv_text([str(c) for c in frame.columns], frame.itertuples(index=False))


def untrusted_table(frame: pd.DataFrame, file_name: str, **options: Any) -> Any:
    """Show ``frame`` (without its index) and, under it, a button that downloads its rows as
    ``file_name``; ``options`` go to ``st.dataframe``, whose value is returned (a selection
    when ``on_select`` asks for one). ``file_name`` also keys the button: unique per page."""
    shown = st.dataframe(frame, hide_index=True, **options)
    st.download_button(DOWNLOAD_LABEL, data=table_csv(frame), file_name=file_name,
                       mime="text/csv", key=KEY_PREFIX + file_name, on_click="ignore",
                       type="tertiary", icon=":material/download:")
    return shown
