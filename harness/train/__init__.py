"""Training layer: one trial in plain PyTorch (``trial.run_trial``), its model, freeze step, optimizer,
checkpoints, CPU fast paths, frozen-prefix cache and ``engines``. Never imports ray, wandb or the adapters."""
