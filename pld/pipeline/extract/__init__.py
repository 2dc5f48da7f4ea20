"""Stage 1, extracting one rule per training example: ``stage`` runs it, ``flags`` warns
reviewers about doubtful rules, ``browse`` reads the rules back."""
