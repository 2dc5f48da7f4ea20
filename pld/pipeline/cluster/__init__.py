"""Stage 2b, clustering the rules: ``stage`` runs it, ``fit`` holds the maths, ``read`` reads
clusterings back, ``edits`` holds reviewers' changes with their audit rows."""
