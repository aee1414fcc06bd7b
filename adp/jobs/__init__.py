"""Batch jobs: the typed job spec, the runner, the summary and the report."""
