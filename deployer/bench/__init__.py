"""Benchmarks: each measures the thing and its baseline in the same run and reports ratios."""
