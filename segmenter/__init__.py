"""Streaming customer segmentation: the pure core (no Kafka, no clock, no environment)."""

__version__ = "0.1.0"
