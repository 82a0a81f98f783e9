"""Layout checks on the rendered figure and the page: no plot label overlaps another label or a marker (on
crowded data, measured with matplotlib's renderer), and report.html puts the verdicts first."""
from __future__ import annotations

import itertools
import math
import re

import matplotlib.pyplot as plt
import pytest
from matplotlib.collections import PathCollection
from matplotlib.text import Text
from matplotlib.transforms import Bbox

from harness import reporting as report
from harness.reporting.plots import pareto_figure
from harness.reporting.summary import pareto_front
from tests.reporting.synth import make_sweep

NAMES = ["full", "freeze_attention", "freeze_ffn", "top_k(k=2)", "top_k(k=4)", "bitfit", "head_only",
         "lora(alpha=16,r=8)", "prefix(len=10)", "bottom_k(k=3)", "top_k(k=6)", "freeze_embeddings"]
# two strategies at (almost) the same point, a cluster of five within a few pixels, and some spread
PARAMS = [22.7e6, 11.8e6, 11.8e6, 8.0e6, 8.1e6, 1.0e5, 2.3e4, 3.0e5, 3.0e5, 8.05e6, 8.0e6, 22.0e6]
SCORES = [0.900, 0.8990, 0.8990, 0.895, 0.8955, 0.880, 0.700, 0.889, 0.8891, 0.8952, 0.8951, 0.9001]
VERDICTS = ["baseline", "non-inferior", "non-inferior", "inconclusive", "inconclusive", "inferior", "inferior",
            "inconclusive", "inconclusive", "non-inferior", "inconclusive", "superior"]


def crowded(cost: str) -> list[dict]:
    col = {"params": "trainable_params", "time": "wall_s", "memory": "peak_mem_mb"}[cost]
    xs = PARAMS if cost == "params" else [30 + p / 1e6 for p in PARAMS]
    rows = [{"strategy": n, col: x, "test_score_mean": y, "verdict": v, "test_score_std": 0.004}
            for n, x, y, v in zip(NAMES, xs, SCORES, VERDICTS)]
    for r, on in zip(rows, pareto_front([(r[col], r["test_score_mean"]) for r in rows])):
        r["pareto"] = on
    return rows


def _label_boxes(fig) -> list[tuple[str, Bbox]]:
    fig.canvas.draw()                       # positions as drawn; text extent only (not the leader line)
    renderer = fig.canvas.get_renderer()
    ax = fig.axes[0]
    return [(t.get_text(), Text.get_window_extent(t, renderer)) for t in ax.texts]


def _marker_boxes(fig) -> list[Bbox]:
    ax = fig.axes[0]
    out = []
    for coll in ax.collections:
        if not isinstance(coll, PathCollection):
            continue
        offsets = coll.get_offset_transform().transform(coll.get_offsets())
        for (cx, cy), size in zip(offsets, itertools.cycle(coll.get_sizes())):
            r = math.sqrt(size) / 2 * fig.dpi / 72
            out.append(Bbox.from_extents(cx - r, cy - r, cx + r, cy + r))
    return out


@pytest.mark.parametrize("cost", ["params", "time"])
def test_no_label_overlaps_another_label_or_a_marker_on_crowded_data(cost):
    fig = pareto_figure(crowded(cost), cost, "accuracy")
    labels, markers = _label_boxes(fig), _marker_boxes(fig)
    assert sorted(t for t, _ in labels) == sorted(NAMES) and len(markers) == len(NAMES)
    for (ta, a), (tb, b) in itertools.combinations(labels, 2):
        assert not a.overlaps(b), f"labels {ta!r} and {tb!r} overlap: {a} {b}"
    for text, box in labels:
        hit = [i for i, m in enumerate(markers) if box.overlaps(m)]
        assert not hit, f"label {text!r} overlaps marker(s) of {[NAMES[i] for i in hit]}"
        assert fig.bbox.contains(box.x0, box.y0) and fig.bbox.contains(box.x1, box.y1), f"{text!r} off the figure"
    plt.close(fig)


def test_saved_report_plot_has_the_same_placement(tmp_path):
    folder = make_sweep(tmp_path)
    report.write_report(folder, console=lambda s: None)
    png = folder / "plots" / "score_vs_cost.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    t = report.build_tables(folder)
    fig = pareto_figure(t["summary"], t["cost"], t["metric"])
    labels = _label_boxes(fig)
    assert all(not a.overlaps(b) for (_, a), (_, b) in itertools.combinations(labels, 2))
    plt.close(fig)


def test_html_puts_recommendation_and_verdicts_before_the_wide_tables(tmp_path):
    folder = make_sweep(tmp_path)
    report.write_report(folder, console=lambda s: None, plots=False)
    page = (folder / "report.html").read_text()
    rec, verdicts = page.index('id="recommendation"'), page.index('id="verdicts"')
    details, how = page.index('id="details"'), page.index('id="how-to-read"')
    assert rec < verdicts < details < how
    short = re.search(r'<table class="verdicts">(.*?)</table>', page, re.S).group(1)
    heads = [re.sub(r"<br>.*", "", h) for h in re.findall(r"<th(?:\s[^>]*)?>(.*?)</th>", short)]
    assert heads[:2] == ["strategy", "verdict"] and len(heads) <= 12 and "test_score_mean" in heads
    assert '<table class="verdicts">' in page and '<div class="scroll"><table class="verdicts">' not in page
    assert '<div class="scroll"><table class="details">' in page and '<div class="scroll"><table class="rows">' in page
    assert "overflow-x:auto" in page and "position:sticky;left:0" in page   # wide tables scroll in their own box
    for words in ("Selection on validation", "The margin", "Adjusted p-values", "The bootstrap", "Inconclusive"):
        assert words in page
