"""PLD Studio, the Streamlit app: ``streamlit run app.py``.

A thin view over the ``pld`` package: it opens the workspace, keeps the sidebar settings
(workspace file, reviewer, teacher and student models) and hands over to the pages.
"""

from __future__ import annotations

import streamlit as st

from pld.ui import page

st.set_page_config(page_title="PLD Studio", page_icon="📐", layout="wide")

pages = [
    st.Page("pages/home.py", title="Home", icon="🏠", default=True),
    st.Page("pages/data.py", title="Data", icon="📥"),
    st.Page("pages/extract.py", title="Micro-instructions", icon="✍️"),
    st.Page("pages/clusters.py", title="Clusters", icon="🧩"),
    st.Page("pages/heuristics.py", title="Heuristics", icon="✅"),
    st.Page("pages/conflicts.py", title="Conflicts", icon="⚖️"),
    st.Page("pages/evaluate.py", title="Evaluate", icon="📊"),
    st.Page("pages/export.py", title="Export", icon="📦"),
    st.Page("pages/calls.py", title="Calls", icon="📞"),
]
nav = st.navigation(pages)
page.render_sidebar()
nav.run()
