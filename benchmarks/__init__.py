"""Benchmarks: speed and memory of every layer against its floor (run `python -m benchmarks`)."""
