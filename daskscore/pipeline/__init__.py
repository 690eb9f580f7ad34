"""Pipelines: steps run in order, submitted to an experiment; run history; reuse."""
