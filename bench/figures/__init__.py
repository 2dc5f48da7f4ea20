"""The benchmarks' figures, one module per family; ``bench/speed.py`` and ``bench/quality.py``
are the entry scripts that parse the command line and run them.

* shared: :mod:`.machine` (the ``machine`` block, paths), :mod:`.results` (JSON files, README
  tables, the console table), :mod:`.workspaces` (scratch workspaces, child processes, token
  counts), :mod:`.scripted` (a scripted teacher and student for the fake servers)
* :mod:`.speed`: one module per figure family of ``speed.json``
* :mod:`.quality`: the stages of a ``quality.json`` task block, from sizes to the README table
"""
