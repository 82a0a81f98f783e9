"""freezebench: which parts of a BERT-like encoder should you freeze when fine-tuning?

Layers, lowest first (docs/architecture.md): ``strategies`` → ``harness.config`` → ``harness.results``,
``harness.data`` → ``harness.train`` → ``harness.reporting`` → ``harness.adapters`` → the command-line entry
points here (``sweep``, ``report``, ``submit``, ``list_strategies``, with ``preflight``).
"""
__version__ = "0.2.0"
