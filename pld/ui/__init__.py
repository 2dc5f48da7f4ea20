"""Helpers shared by the Streamlit pages: session settings and the cached workspace handle.

Pages import from here instead of repeating set-up code; no SQL or LLM calls happen here either,
only the plumbing between Streamlit's session state and the ``pld`` API.
"""
