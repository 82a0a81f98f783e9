"""Ray adapter: Ray Tune runs the trials (``tune``), Ray Train runs the workers of a data-parallel trial
(``train``), ``progress`` prints the sweep's console lines, ``cluster`` starts or joins Ray."""
from __future__ import annotations

from harness.adapters.ray.cluster import init_ray
from harness.adapters.ray.tune import experiment_path, finalize_results, finished_result, run_tune

__all__ = ["init_ray", "run_tune", "finalize_results", "finished_result", "experiment_path"]
