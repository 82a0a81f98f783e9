"""SLURM adapter: the batch script (``script``) and graceful stop on SLURM's signals (``signals``)."""
