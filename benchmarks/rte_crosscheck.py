"""RTE with the packaged MiniLM in a plain transformers + torch loop, no harness code: does the harness hold the
model at chance, or does the model stay there on its own?

    python -m benchmarks.rte_crosscheck [--pooling cls|mean] [--lr 5e-5] [--epochs 4] [--seed 0] [--threads 2]

Same splits as the harness's ``configs/glue_rte.yaml`` with the shared TSVs (``../shared/data/glue/RTE``): 124
training pairs held out (a fixed shuffle), the rest trained on, ``dev.tsv`` read after each epoch. ``mean``
classifies the masked mean of the last hidden states (how sentence-transformers pools this model) instead of the
pooler's [CLS]. Prints the CPU model, then loss, held-out and dev accuracy per epoch.
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
    ap.add_argument("--pooling", choices=("cls", "mean"), default="cls")
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

    def logits(batch):
        enc = tok([b[0] for b in batch], [b[1] for b in batch], truncation=True, max_length=args.max_length,
                  padding=True, return_tensors="pt")
        if args.pooling == "cls":
            return model(**enc).logits
        hidden = model.bert(**enc).last_hidden_state
        mask = enc["attention_mask"].unsqueeze(-1).float()
        return model.classifier(model.dropout((hidden * mask).sum(1) / mask.sum(1)))

    def accuracy(data) -> float:
        model.eval()
        with torch.inference_mode():
            right = sum((logits(data[i:i + 64]).argmax(-1) == torch.tensor([b[2] for b in data[i:i + 64]])).sum().item()
                        for i in range(0, len(data), 64))
        model.train()
        return right / len(data)

    bs = 16
    steps = args.epochs * (len(train) // bs)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    sched = get_linear_schedule_with_warmup(opt, int(0.1 * steps), steps)
    start = time.perf_counter()
    for epoch in range(args.epochs):
        random.Random(args.seed + epoch).shuffle(train)
        for i in range(0, len(train) - bs + 1, bs):
            batch = train[i:i + bs]
            loss = torch.nn.functional.cross_entropy(logits(batch), torch.tensor([b[2] for b in batch]))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step(), sched.step(), opt.zero_grad()
        print(f"epoch {epoch + 1}: loss {loss.item():.3f}  held-out {accuracy(held):.3f}  dev {accuracy(dev):.3f}  "
              f"({time.perf_counter() - start:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
