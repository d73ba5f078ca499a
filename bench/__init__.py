"""Benchmarks: each script prints its figures (events/s, ratios, RSS); none asserts a time."""
