"""Benchmarks: `python -m bench` (or `make bench`) runs them all, each beside its baseline."""
