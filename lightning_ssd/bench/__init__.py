"""The decoding benchmark: every method on the same model and inputs, in one run, median of repeats."""

from lightning_ssd.bench.runner import BenchConfig, run_benchmark

__all__ = ["BenchConfig", "run_benchmark"]
