"""Callbacks: exit-layer choice, failure guards, throughput, and TensorBoard figures/text of draft acceptance."""

from lightning_ssd.callbacks.choose_layer import ChooseLayerCallback
from lightning_ssd.callbacks.figures import AcceptanceFigures
from lightning_ssd.callbacks.guards import FiniteLossGuard
from lightning_ssd.callbacks.predictions import PredictionWriter
from lightning_ssd.callbacks.samples import DraftSamples
from lightning_ssd.callbacks.sweep import DraftLengthSweep
from lightning_ssd.callbacks.throughput import TrainThroughput

__all__ = [
    "AcceptanceFigures",
    "ChooseLayerCallback",
    "DraftLengthSweep",
    "DraftSamples",
    "FiniteLossGuard",
    "PredictionWriter",
    "TrainThroughput",
]
