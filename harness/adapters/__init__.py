"""Adapters at the edges: the only code that imports ray, wandb or calls sbatch (``ray``, ``wandb``, ``slurm``),
and ``shims``, the one place they touch a library's private state."""
