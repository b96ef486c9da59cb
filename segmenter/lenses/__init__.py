"""Lenses: named segmentations over a subset of customer features.

A :class:`Lens` scales a customer's features, learns an online river clustering
model on a deterministic sample, keeps stable segment ids over the model's
moving clusters (:class:`SegmentRegistry`), names segments from their z-scores
and assigns customers with hysteresis. The package is pure: no Kafka, no clock,
no environment, no global mutable state.
"""

from segmenter.lenses.config import LensConfig, parse_lens_config
from segmenter.lenses.hysteresis import FlapTracker, Hysteresis
from segmenter.lenses.lens import Assignment, Lens
from segmenter.lenses.models import ALGORITHMS, ClusterModel, make_model, validate_params
from segmenter.lenses.naming import SegmentProfile, derive_name
from segmenter.lenses.registry import LifecycleEvent, SegmentRegistry
from segmenter.lenses.scaling import HEAVY_TAILED, OnlineScaler, ScalerSnapshot

__all__ = [
    "ALGORITHMS",
    "HEAVY_TAILED",
    "Assignment",
    "ClusterModel",
    "FlapTracker",
    "Hysteresis",
    "Lens",
    "LensConfig",
    "LifecycleEvent",
    "OnlineScaler",
    "ScalerSnapshot",
    "SegmentProfile",
    "SegmentRegistry",
    "derive_name",
    "make_model",
    "parse_lens_config",
    "validate_params",
]
