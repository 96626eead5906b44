"""Overture's benchmark suite: ``python -m benchmarks --help``. Results go to ``RESULTS.md``."""
