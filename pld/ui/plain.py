"""Untrusted text inside a Markdown sentence, shown literally.

Reviewer names, model strings and uploaded file names sometimes belong inside a sentence that
Streamlit renders as Markdown (a caption, an alert). Backslash-escaping every character Markdown
(and Streamlit's ``$``-math) gives a meaning to makes the sentence show the text exactly as
written: ``a_b*`` stays ``a_b*`` instead of turning italic.
"""

from __future__ import annotations

import re

# CommonMark's escapable ASCII punctuation, plus "$" (Streamlit renders $...$ as math).
_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$&:\"'])")


def literal(text: object) -> str:
    """``text`` escaped so that Markdown renders it character for character."""
    return _SPECIAL.sub(r"\\\1", str(text)).replace("\n", " ")
