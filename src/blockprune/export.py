"""Moved to :mod:`blockprune.deploy.onnx_export`; this name stays until every caller imports from there."""

from blockprune.deploy.onnx_export import (  # noqa: F401
    FLOAT32_TOLERANCE,
    OnnxRuntimeClassifier,
    check_onnx,
    export_onnx,
)
