import os

# llama.cpp's OpenMP threads spin while idle by default, which slowed calls 3-6x on a busy
# 2-core machine; libgomp reads this once when it loads, so it is set before anything imports it.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from pld.cli import main

main()
