"""Benchmarks: stand-alone scripts (``python benchmarks/engine_bench.py`` ...) and
``python -m benchmarks``, which runs them all and writes a dated JSON and REPORT.md."""
