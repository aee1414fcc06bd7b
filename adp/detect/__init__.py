"""Detectors: the name registry, partition-parallel fit and score, thresholds."""
