"""Each private attribute the adapters' shims touch still exists in the installed ray / wandb /
wandb-workspaces, and each shim does what it says. An upgrade that moves one fails here, loudly."""
from __future__ import annotations

import importlib
import subprocess
import sys


from harness.adapters import shims


def test_ray_cluster_mode_constant_exists():
    constants = importlib.import_module("ray._private.ray_constants")
    assert hasattr(constants, "ENABLE_RAY_CLUSTER"), "ray moved ENABLE_RAY_CLUSTER: fix keep_ray_on_loopback"


def test_in_tune_session_is_false_outside_tune():
    from ray.tune.trainable import trainable_fn_utils

    assert callable(getattr(trainable_fn_utils, "_in_tune_session", None)), "ray moved _in_tune_session"
    assert shims.in_tune_session() is False


def test_restored_tuner_keeps_its_run_config_where_the_shim_writes(tmp_path):
    from ray import tune

    tuner = tune.Tuner(lambda config: None, run_config=tune.RunConfig(storage_path=str(tmp_path), name="x"))
    run_config = tuner._local_tuner._run_config          # noqa: SLF001 - the attribute the shim relies on
    marker = object()
    shims.set_restored_tuner_callbacks(tuner, [marker])
    assert tuner._local_tuner._run_config is run_config and run_config.callbacks == [marker]   # noqa: SLF001


def test_wandb_launch_probe_is_wrapped_once():
    from wandb.sdk import wandb_run

    assert hasattr(wandb_run.Run, "_detect_and_apply_job_inputs"), "wandb dropped the launch probe: drop the shim"
    shims.skip_wandb_launch_probe()
    wrapped = wandb_run.Run._detect_and_apply_job_inputs
    shims.skip_wandb_launch_probe()
    assert wandb_run.Run._detect_and_apply_job_inputs is wrapped and wrapped._freezebench


def test_wandb_report_spec_is_the_model_save_uploads():
    import wandb_workspaces.reports.v2 as wr
    report = wr.Report(project="p", entity="", title="t", blocks=[wr.P("x")])
    model = shims.wandb_report_spec(report)
    assert model.display_name == "t" and model.spec is not None


def test_a_local_ray_is_one_node_so_grid_sweeps_reuse_actors():
    """``single_node`` decides actor reuse for grid sweeps; a local ``init_ray`` (a fresh process: Ray is
    process-global) must count one live node."""
    code = ("from harness.adapters.ray.cluster import init_ray; init_ray(None, 1); "
            "from harness.adapters.ray.tune import single_node; print('single', single_node())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "single True" in out.stdout, out.stdout + out.stderr[-2000:]
