"""LLM backends behind one protocol, and the one cache + call log every call goes through."""
