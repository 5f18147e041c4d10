#!/usr/bin/env python3
"""The long bad-input fuzz run (CI runs a fixed-seed slice in tests/test_fuzz_bad_inputs.py):

    .venv/bin/python tools/fuzz.py --cases 20000 [--seed 0] [--jobs 2] [--batch 200]

Prints every failure (wrong result, unclear error, crash, hang, unhealthy device) with its
seed; ``tests/fuzz/cases.py``'s ``make_case(seed)`` rebuilds a case. Exit status 1 on any.
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))

from fuzz.runner import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
