"""RTE with the packaged MiniLM in a plain transformers + torch loop, no harness code: does the harness hold the
model at chance, or does the model stay there on its own?

    python -m benchmarks.rte_crosscheck [--pooling cls|mean|bi|cosine] [--freeze-attention] [--lr 5e-5] [--head-lr X]
                                        [--epochs 4] [--seed 0] [--threads 2]
    python -m benchmarks.rte_crosscheck --frozen-cosine | --frozen-probe

Same splits as the harness's ``configs/glue_rte.yaml`` with the shared TSVs (``../shared/data/glue/RTE``): 124
training pairs held out (a fixed shuffle), the rest trained on, ``dev.tsv`` read after each epoch. ``mean``
classifies the masked mean of the last hidden states (how sentence-transformers pools this model) instead of the
pooler's [CLS]. ``bi`` encodes the two texts separately (a bi-encoder, as sentence-transformers trains this model
on NLI): masked means u and v, a linear head on (u, v, |u - v|). Prints the CPU model, then loss, held-out and dev
accuracy per epoch. ``--frozen-cosine`` trains nothing: a scikit-learn logistic regression on the cosine of the
frozen model's mean-pooled embeddings of the two texts, fitted on the training pairs, scored once on dev, with
scipy's one-sided binomial p against the dev majority class. ``--frozen-probe`` asks which frozen pair features carry
that signal: one cross-validated logistic regression each on the cross-encoded [CLS] state and masked mean, the
bi-encoded (u, v, |u - v|, u * v) and their cosine. ``--pooling cosine`` fine-tunes a bi-encoder whose head reads only
that cosine (``--head-lr`` for its two weights); ``--freeze-attention`` freezes the embeddings and attention.
"""
from __future__ import annotations

import argparse
import csv
import random
import time
from pathlib import Path

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, get_linear_schedule_with_warmup

from harness.results.env import cpu_model
from harness.train.model import PACKAGED_MODEL, resolve_source

RTE = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "glue" / "RTE"


def read(path: Path) -> list[tuple[str, str, int]]:
    with path.open(newline="") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))[1:]
    return [(r[1], r[2], 0 if r[3] == "entailment" else 1) for r in rows]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pooling", choices=("cls", "mean", "bi", "cosine"), default="cls")
    ap.add_argument("--freeze-attention", action="store_true", help="embeddings and attention frozen")
    ap.add_argument("--head-lr", type=float, default=None, help="learning rate of the new head (default: --lr)")
    ap.add_argument("--frozen-cosine", action="store_true", help="no fine-tuning: logistic regression on the cosine")
    ap.add_argument("--frozen-probe", action="store_true",
                    help="no fine-tuning: the same cross-validated probe on four kinds of frozen pair features")
    ap.add_argument("--lr", type=float, default=5e-5)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-length", type=int, default=128)
    args = ap.parse_args(argv)
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    print(f"CPU: {cpu_model()}; {args}", flush=True)
    train, dev = read(RTE / "train.tsv"), read(RTE / "dev.tsv")
    random.Random(0).shuffle(train)
    held, train = train[:124], train[124:]
    source = resolve_source(PACKAGED_MODEL)
    tok = AutoTokenizer.from_pretrained(source)
    model = AutoModelForSequenceClassification.from_pretrained(source, num_labels=2)
    if args.frozen_cosine:
        return frozen_cosine(model.bert.eval(), tok, train + held, dev, args.max_length)
    if args.frozen_probe:
        return frozen_probe(model.bert.eval(), tok, train + held, dev, args.max_length)
    bi_head = torch.nn.Linear(1 if args.pooling == "cosine" else 3 * model.config.hidden_size, 2)
    if args.freeze_attention:
        for name, param in model.named_parameters():
            param.requires_grad_(not ("embeddings." in name or ".attention." in name))

    def logits(batch):
        first, second = [b[0] for b in batch], [b[1] for b in batch]
        if args.pooling in ("bi", "cosine"):
            u, v = (mean_pooled(model.bert, tok, texts, None, args.max_length) for texts in (first, second))
            if args.pooling == "cosine":
                return bi_head(torch.nn.functional.cosine_similarity(u, v).unsqueeze(-1))
            return bi_head(model.dropout(torch.cat([u, v, (u - v).abs()], -1)))
        if args.pooling == "mean":
            return model.classifier(model.dropout(mean_pooled(model.bert, tok, first, second, args.max_length)))
        return model(**tok(first, second, truncation=True, max_length=args.max_length, padding=True,
                           return_tensors="pt")).logits

    def accuracy(data) -> float:
        model.eval()
        with torch.inference_mode():
            right = sum((logits(data[i:i + 64]).argmax(-1) == torch.tensor([b[2] for b in data[i:i + 64]])).sum().item()
                        for i in range(0, len(data), 64))
        model.train()
        return right / len(data)

    bs = 16
    steps = args.epochs * (len(train) // bs)
    head = list(bi_head.parameters()) if args.pooling in ("bi", "cosine") else []
    params = [p for p in model.parameters() if p.requires_grad] + head
    opt = torch.optim.AdamW([{"params": params[:len(params) - len(head)]},
                             {"params": head, "lr": args.head_lr or args.lr, "weight_decay": 0.0}],
                            lr=args.lr, weight_decay=0.01)
    sched = get_linear_schedule_with_warmup(opt, int(0.1 * steps), steps)
    start = time.perf_counter()
    for epoch in range(args.epochs):
        random.Random(args.seed + epoch).shuffle(train)
        for i in range(0, len(train) - bs + 1, bs):
            batch = train[i:i + bs]
            loss = torch.nn.functional.cross_entropy(logits(batch), torch.tensor([b[2] for b in batch]))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step(), sched.step(), opt.zero_grad()
        print(f"epoch {epoch + 1}: loss {loss.item():.3f}  held-out {accuracy(held):.3f}  dev {accuracy(dev):.3f}  "
              f"({time.perf_counter() - start:.0f} s)", flush=True)


def encoded(encoder, tok, texts, pairs, max_length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Last hidden states of ``texts`` (with ``pairs``, the two tokenized together) and their [batch, len, 1] mask."""
    enc = tok(texts, pairs, truncation=True, max_length=max_length, padding=True, return_tensors="pt")
    return encoder(**enc).last_hidden_state, enc["attention_mask"].unsqueeze(-1).float()


def masked_mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (hidden * mask).sum(1) / mask.sum(1)


def mean_pooled(encoder, tok, texts, pairs, max_length: int) -> torch.Tensor:
    """Masked mean of the last hidden states of ``texts`` (with ``pairs``, the two tokenized together)."""
    return masked_mean(*encoded(encoder, tok, texts, pairs, max_length))


def pair_features(encoder, tok, data, max_length: int) -> dict:
    """Frozen features of each pair: cross-encoded ([CLS] state, masked mean) and bi-encoded ((u, v, |u-v|, u*v), cos)."""
    out: dict[str, list] = {"cross [CLS]": [], "cross mean": [], "bi (u, v, |u-v|, u*v)": [], "bi cosine": []}
    with torch.inference_mode():
        for i in range(0, len(data), 64):
            first, second = [b[0] for b in data[i:i + 64]], [b[1] for b in data[i:i + 64]]
            hidden, mask = encoded(encoder, tok, first, second, max_length)     # one cross-encoding for both
            out["cross [CLS]"].append(hidden[:, 0])
            out["cross mean"].append(masked_mean(hidden, mask))
            u, v = (mean_pooled(encoder, tok, texts, None, max_length) for texts in (first, second))
            out["bi (u, v, |u-v|, u*v)"].append(torch.cat([u, v, (u - v).abs(), u * v], -1))
            out["bi cosine"].append(torch.nn.functional.cosine_similarity(u, v).unsqueeze(-1))
    return {k: torch.cat(v).numpy() for k, v in out.items()}


def frozen_probe(encoder, tok, train, dev, max_length: int) -> None:
    """Which frozen pair features carry signal? One probe for all: standardised features, logistic regression with
    its C chosen by 5-fold cross-validation on the training pairs (scikit-learn), scored once on dev."""
    from scipy.stats import binomtest
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    train_x, dev_x = pair_features(encoder, tok, train, max_length), pair_features(encoder, tok, dev, max_length)
    train_y, dev_y = [b[2] for b in train], [b[2] for b in dev]
    majority = max(dev_y.count(0), dev_y.count(1)) / len(dev_y)
    for name, x in train_x.items():
        fit = make_pipeline(StandardScaler(), LogisticRegressionCV(Cs=10, cv=5, max_iter=2000)).fit(x, train_y)
        right = int((fit.predict(dev_x[name]) == dev_y).sum())
        p = binomtest(right, len(dev_y), majority, alternative="greater").pvalue
        print(f"frozen {name:<22} ({x.shape[1]:4d} features): train {fit.score(x, train_y):.3f}  dev "
              f"{right / len(dev_y):.3f} ({right}/{len(dev_y)}; majority {majority:.3f}, binomial p {p:.3f})", flush=True)


def frozen_cosine(encoder, tok, train, dev, max_length: int) -> None:
    """Is there signal the frozen sentence embeddings carry? Cosine of (premise, hypothesis), one feature."""
    from scipy.stats import binomtest
    from sklearn.linear_model import LogisticRegression

    def cosines(data):
        with torch.inference_mode():
            out = [torch.nn.functional.cosine_similarity(
                *(mean_pooled(encoder, tok, [b[k] for b in data[i:i + 64]], None, max_length) for k in (0, 1)))
                for i in range(0, len(data), 64)]
        return torch.cat(out).unsqueeze(-1).numpy()

    train_x, train_y, dev_y = cosines(train), [b[2] for b in train], [b[2] for b in dev]
    fit = LogisticRegression().fit(train_x, train_y)
    right = int((fit.predict(cosines(dev)) == dev_y).sum())
    majority = max(dev_y.count(0), dev_y.count(1)) / len(dev_y)
    p = binomtest(right, len(dev_y), majority, alternative="greater").pvalue
    print(f"frozen cosine + logistic regression: train {fit.score(train_x, train_y):.3f}  "
          f"dev {right / len(dev_y):.3f} ({right}/{len(dev_y)}; majority {majority:.3f}, binomial p {p:.3f})", flush=True)

if __name__ == "__main__":
    main()
