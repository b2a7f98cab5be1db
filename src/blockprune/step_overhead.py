"""Moved to :mod:`blockprune.bench.train_steps`; this name stays until every caller imports from there."""

from blockprune.bench.train_steps import measure_step_overhead  # noqa: F401
