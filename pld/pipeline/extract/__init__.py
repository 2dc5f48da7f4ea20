"""Stage 1, extracting one rule per training example: ``stage`` runs it, ``contrast`` pairs each
example with a similar one of another label, ``student_scores`` finds where the student fails,
``flags`` and ``restatements`` warn reviewers about doubtful rules, ``browse`` reads the rules
back."""
