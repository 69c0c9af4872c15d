"""Benchmarks: each prints its figures against a baseline or the physical floor in the same run (README, Benchmarks)."""
