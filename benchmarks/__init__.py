"""Benchmarks: ``python -m benchmarks.trial_throughput`` (CPU), ``python -m benchmarks.gpu_check`` (GPU)."""
