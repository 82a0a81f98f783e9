"""python -m harness.list_strategies [--model NAME | --arch ARCH]: every registered freeze strategy with its
trainable-parameter count on a model (built on the meta device: no weights are loaded)."""
from __future__ import annotations

import sys

import strategies
from harness.cli import parser
from harness.config import ModelConfig
from harness.train.model import PACKAGED_MODEL, build_model

__all__ = ["main", "strategy_table"]


def strategy_table(model_cfg: ModelConfig) -> list[dict]:
    rows = []
    for name in strategies.available():
        frozen = strategies.freeze(build_model(model_cfg, meta=True), name)
        rows.append({"strategy": name, "trainable": frozen.trainable, "total": frozen.total, "ratio": frozen.ratio,
                     "summary": strategies.summary(name)})
    return rows


def main(argv=None) -> int:
    p = parser("python -m harness.list_strategies", __doc__)
    g = p.add_mutually_exclusive_group()
    g.add_argument("--model", default=None, help=f"hub id, folder or package (default: {PACKAGED_MODEL})")
    g.add_argument("--arch", choices=["bert", "roberta", "distilbert", "electra"],
                   help="a randomly initialised, base-sized architecture instead")
    args = p.parse_args(argv)
    try:
        cfg = ModelConfig(arch=args.arch) if args.arch else ModelConfig(name=args.model or PACKAGED_MODEL)
        rows = strategy_table(cfg)
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"model: {args.arch or cfg.name} (default parameters of each strategy)")
    print(f"{'strategy':<18} {'trainable':>13} {'total':>13} {'ratio':>7}  what trains")
    for r in rows:
        print(f"{r['strategy']:<18} {r['trainable']:>13,} {r['total']:>13,} {r['ratio']:>7.4f}  {r['summary']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
