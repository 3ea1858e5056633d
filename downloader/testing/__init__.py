"""Local servers that speak real protocols, for tests, the demo and the benchmarks.

They bind to 127.0.0.1 only. Nothing here is used by a normal download.
"""
