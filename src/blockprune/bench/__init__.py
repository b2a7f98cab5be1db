"""Speed, measured: inference timing of models side by side, training-step overhead, tables.

- :mod:`~blockprune.bench.inference`: :func:`benchmark_models` over a grid of cells
  (:mod:`~blockprune.bench.cells`), each backend made ready by a runner
  (:mod:`~blockprune.bench.runners`), with the analytic side from :mod:`~blockprune.bench.model_info`;
- :mod:`~blockprune.bench.speedup`: the speed-up a training job writes into results.json;
- :mod:`~blockprune.bench.overhead` / :mod:`~blockprune.bench.train_steps`: training-step overhead
  (train_steps imports Lightning and the training code, so it is not imported here);
- :mod:`~blockprune.bench.environment`: the machine every number comes with;
- :mod:`~blockprune.bench.output`: Markdown tables and JSON files.
"""

from blockprune.bench.dtypes import normalise_dtype
from blockprune.bench.environment import environment
from blockprune.bench.inference import benchmark_models
from blockprune.bench.output import save, to_markdown
from blockprune.bench.overhead import training_step_overhead
from blockprune.bench.speedup import measure_speedup

__all__ = [
    "benchmark_models",
    "environment",
    "measure_speedup",
    "normalise_dtype",
    "save",
    "to_markdown",
    "training_step_overhead",
]
