"""The figures of ``bench/speed.py``, one module per family: each ``measure_*`` function takes
the parsed command line and returns ``{key: entry}`` for its section of ``speed.json`` (an
entry made by :func:`.report.entry`)."""
