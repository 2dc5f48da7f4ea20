"""The stages of the method: each reads rows from the workspace, writes rows, skips what is done."""
