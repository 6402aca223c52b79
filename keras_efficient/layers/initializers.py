"""Kernel initializers of the reference EfficientNet (REFERENCE §1.2)."""

from __future__ import annotations

from typing import Any

CONV_KERNEL_INITIALIZER: dict[str, Any] = {
    "class_name": "VarianceScaling",
    "config": {"scale": 2.0, "mode": "fan_out", "distribution": "truncated_normal"},
}
DENSE_KERNEL_INITIALIZER: dict[str, Any] = {
    "class_name": "VarianceScaling",
    "config": {"scale": 1.0 / 3.0, "mode": "fan_out", "distribution": "uniform"},
}
