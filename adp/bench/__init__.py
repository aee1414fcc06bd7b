"""Benchmarks behind ``adp bench``."""
