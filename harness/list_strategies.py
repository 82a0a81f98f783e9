"""python -m harness.list_strategies [--model NAME | --arch ARCH [--override KEY=VALUE ...]]: every registered
freeze strategy with its trainable-parameter count on a model (built on the meta device: no weights are loaded).
A strategy the model cannot take with its default parameters (bitfit on a ModernBERT without biases, a role
strategy on an architecture without a role table) is listed with the reason instead of a count."""
from __future__ import annotations

import sys

import yaml

import strategies
from harness.cli import parser
from harness.config import ModelConfig
from harness.train.model import PACKAGED_MODEL, build_model, load_hf_config

__all__ = ["main", "strategy_table"]


def strategy_table(model_cfg: ModelConfig) -> list[dict]:
    """One row per strategy: counts, or ``refused`` (the reason) where the model cannot take it."""
    hf = load_hf_config(model_cfg)
    rows = []
    for name in strategies.available():
        row = {"strategy": name, "trainable": None, "total": None, "ratio": None, "refused": None,
               "summary": strategies.summary(name)}
        try:
            params = strategies.check_compatible(name, None, hf)
            frozen = strategies.freeze(build_model(model_cfg, meta=True), name, params)
        except (strategies.StrategyError, strategies.UnmappedParameterError) as exc:
            row["refused"] = str(exc)
        else:
            row.update(trainable=frozen.trainable, total=frozen.total, ratio=frozen.ratio)
        rows.append(row)
    return rows


def _override(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise ValueError(f"--override {text!r}: expected KEY=VALUE (a Hugging Face config key)")
    return key, yaml.safe_load(value)


def main(argv=None) -> int:
    p = parser("python -m harness.list_strategies", __doc__)
    g = p.add_mutually_exclusive_group()
    g.add_argument("--model", default=None, help=f"hub id, folder or package (default: {PACKAGED_MODEL})")
    g.add_argument("--arch", choices=strategies.SUPPORTED_TYPES,
                   help="a randomly initialised, base-sized architecture instead")
    p.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                   help="with --arch: a config value, e.g. relative_attention=true (repeatable)")
    args = p.parse_args(argv)
    try:
        if args.override and not args.arch:
            raise ValueError("--override only applies with --arch (random initialisation)")
        overrides = dict(map(_override, args.override))
        cfg = ModelConfig(arch=args.arch, overrides=overrides) if args.arch else \
            ModelConfig(name=args.model or PACKAGED_MODEL)
        rows = strategy_table(cfg)
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    extra = "".join(f" {k}={v}" for k, v in overrides.items())
    print(f"model: {args.arch or cfg.name}{extra} (default parameters of each strategy)")
    print(f"{'strategy':<18} {'trainable':>13} {'total':>13} {'ratio':>7}  what trains")
    for r in rows:
        if r["refused"]:
            print(f"{r['strategy']:<18} {'-':>13} {'-':>13} {'-':>7}  refused: {r['refused']}")
        else:
            print(f"{r['strategy']:<18} {r['trainable']:>13,} {r['total']:>13,} {r['ratio']:>7.4f}  {r['summary']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
