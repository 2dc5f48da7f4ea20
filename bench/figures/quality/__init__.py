"""The stages of ``bench/quality.py``: :mod:`.plan` (subset sizes and the time estimate),
:mod:`.variants` (one workspace per configuration, method variants), :mod:`.run` (running or
resuming the chain on a task), :mod:`.readout` (reading a finished workspace into a task block)
and :mod:`.report` (``quality.json``, the console and README tables)."""
