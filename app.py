"""PLD Studio, the Streamlit app: ``streamlit run app.py``.

A thin view over the ``pld`` package: it opens the workspace, keeps the sidebar settings
(workspace file, reviewer, teacher and student models) and hands over to the pages.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from pld.ui import page
from pld.ui.escape import say

# A file of our own, sent inline: a Material icon as the page icon is fetched from Google's font
# CDN (it fails offline, and a tool for teams makes no outside request), an emoji needs an emoji
# font on the reviewer's machine. The navigation's Material icons ship with Streamlit.
ICON = Path(__file__).resolve().parent / "pld" / "ui" / "pld-studio.svg"
st.set_page_config(page_title="PLD Studio", page_icon=ICON, layout="wide")

pages = [
    st.Page("pages/home.py", title="Home", icon=":material/home:", default=True),
    st.Page("pages/data.py", title="Data", icon=":material/upload_file:"),
    st.Page("pages/extract.py", title="Micro-instructions", icon=":material/edit_note:"),
    st.Page("pages/clusters.py", title="Clusters", icon=":material/bubble_chart:"),
    st.Page("pages/heuristics.py", title="Heuristics", icon=":material/rule:"),
    st.Page("pages/conflicts.py", title="Conflicts", icon=":material/balance:"),
    st.Page("pages/evaluate.py", title="Evaluate", icon=":material/bar_chart:"),
    st.Page("pages/export.py", title="Export", icon=":material/ios_share:"),
    st.Page("pages/calls.py", title="Calls", icon=":material/receipt_long:"),
]
nav = st.navigation(pages)
if not st.get_option("client.disableDataExport"):
    # .streamlit/config.toml is read from the folder Streamlit starts in: started elsewhere,
    # the tables' own "Download as CSV" (which writes =formulas live) is back on.
    say("warning", "PLD Studio was started outside its folder, so its settings are not "
                   "loaded and the tables' built-in CSV download is on: it writes cells that "
                   "begin with = + - @ as live formulas. Use the 'Download these rows' buttons, "
                   "or restart with: cd PLD-STUDIO-FOLDER && streamlit run app.py")
page.render_sidebar()
nav.run()
