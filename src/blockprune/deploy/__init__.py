"""Deployment: export to fast runtimes (ONNX, int8), re-test and time them, serve (predict, pipeline)."""

from blockprune.deploy.manifest import read_manifest, serving_runtime
from blockprune.deploy.measure import deploy_after_job, deploy_job, pool_deploy
from blockprune.deploy.pipeline import pipeline
from blockprune.deploy.runtimes import FILES, RUNTIMES, check_deploy_config, export_runtime, open_runtime

__all__ = [
    "FILES",
    "RUNTIMES",
    "check_deploy_config",
    "deploy_after_job",
    "deploy_job",
    "export_runtime",
    "open_runtime",
    "pipeline",
    "pool_deploy",
    "read_manifest",
    "serving_runtime",
]
