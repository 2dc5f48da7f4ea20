"""Stage 6, the conflict loop: ``loop`` runs it, ``state`` holds its records and rows,
``proposals`` asks the teacher for changes, ``decisions`` applies people's decisions on them,
``view`` is what the app and CLI show of it, ``impact`` measures each heuristic's effect."""
