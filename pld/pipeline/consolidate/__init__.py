"""Stage 3, consolidating each cluster's rules into one draft heuristic: ``stage`` runs it and
stores the drafts, ``merge`` turns a cluster's rules into one heuristic's text."""
