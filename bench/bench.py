"""Benchmark the enrollment endpoints end to end: `make bench` (issue 5; `--help` says what a run does).

The code is the package beside this file, bench/enrollbench/ (main is in enrollbench/cli.py).
"""

import sys

from enrollbench.cli import entry_point

if __name__ == "__main__":
    sys.exit(entry_point())
