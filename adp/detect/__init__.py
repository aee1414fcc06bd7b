"""Detectors: the name registry and catalogue, partition-parallel fit (sample, distributed,
bagging) and score, global thresholds (exact contamination, fixed, automatic), ensembles and
explanations."""
