"""``python -m pld``: the same command line as the ``pld`` console script."""

from pld.cli import main

if __name__ == "__main__":
    main()
