"""Moved to :mod:`blockprune.bench`; this name stays until every caller imports from there."""

from blockprune.bench import (  # noqa: F401
    benchmark_models,
    environment,
    measure_speedup,
    normalise_dtype,
    save,
    to_markdown,
    training_step_overhead,
)
