"""The verdict statistics on hand-made seeds whose right answer is known: non-inferiority at a margin (each
case built so the neighbouring method — Student for Welch, the two-sided interval for the one-sided one — would
answer differently), paired against Welch, the power behind seeds_needed, and the BH adjustment."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from harness.config.schema import ReportConfig
from harness.reporting import compare
from harness.reporting.stats import build_groups
from harness.reporting.summary import summarise
from tests.reporting.synth import make_result

M = 0.01
SPREAD = np.array([0.0, 0.01, -0.01, 0.005, -0.005, 0.008, -0.008])   # 7 seeds of the wide side


def _bounds(a, b, equal_var=False, level=0.95):
    lower = sps.ttest_ind(a, b, equal_var=equal_var, alternative="greater").confidence_interval(level).low
    upper = sps.ttest_ind(a, b, equal_var=equal_var, alternative="less").confidence_interval(level).high
    return lower, upper


# (case, candidate seeds (3, one spread), baseline seeds (7, another spread)) — sizes and variances differ
CASES = [
    ("superior", [0.9060, 0.9065, 0.9055], 0.9 + 0.9 * SPREAD),
    ("non-inferior", [0.8970, 0.8975, 0.8965], 0.9 + 1.05 * SPREAD),
    ("inferior", [0.8840, 0.8845, 0.8835], 0.9 + 0.9 * SPREAD),
    ("inconclusive", [0.885, 0.890, 0.880], 0.9 + 0.1 * SPREAD),
]


@pytest.mark.parametrize("expected,a,b", CASES, ids=[c[0] for c in CASES])
def test_non_inferiority_verdicts_at_the_margin(expected, a, b):
    out = compare.difference(a, b, paired=False, margin=M)
    assert out["verdict"] == expected and out["test_method"] == "welch"
    assert out["diff_vs_full"] == pytest.approx(np.mean(a) - np.mean(b))
    two = sps.ttest_ind(a, b, equal_var=False)
    assert (out["diff_ci_low"], out["diff_ci_high"]) == pytest.approx(tuple(two.confidence_interval(0.95)))
    assert out["p_value"] == pytest.approx(two.pvalue)
    ni = sps.ttest_ind(np.asarray(a) + M, b, equal_var=False, alternative="greater").pvalue
    assert out["ni_p_value"] == pytest.approx(ni)
    assert (out["ni_p_value"] < 0.05) == (expected in ("superior", "non-inferior"))   # the test and the bound agree
    # the neighbouring methods would have answered differently on these very seeds
    student = compare.verdict_of(*_bounds(a, b, equal_var=True), M)
    two_sided = compare.verdict_of(*_bounds(a, b, level=0.975), M)     # one-sided 97.5% = two-sided 95% bounds
    assert student != expected
    assert two_sided != expected or expected == "inconclusive"   # a wider interval cannot decide what this did not


def test_same_data_under_a_wider_margin_changes_the_verdict():
    a, b = CASES[3][1], CASES[3][2]
    assert compare.difference(a, b, False, margin=0.03)["verdict"] == "non-inferior"
    assert compare.difference(a, b, False, margin=0.005)["verdict"] == "inferior"


def test_welch_and_student_differ_on_unequal_variances_and_sizes():
    a, b = [0.8970, 0.8975, 0.8965], 0.9 + 1.05 * SPREAD
    out = compare.difference(a, b, paired=False, margin=M)
    welch, student = sps.ttest_ind(a, b, equal_var=False), sps.ttest_ind(a, b, equal_var=True)
    assert out["p_value"] == pytest.approx(welch.pvalue)
    assert abs(welch.pvalue - student.pvalue) > 0.05


def test_paired_finds_a_difference_that_welch_misses():
    full = [0.80, 0.85, 0.90]
    cand = [x - d for x, d in zip(full, (0.004, 0.005, 0.006))]      # the same seeds, a steady small loss
    paired = compare.difference(cand, full, paired=True, margin=M)
    welch = compare.difference(cand, full, paired=False, margin=M)
    assert paired["test_method"] == "paired" and welch["test_method"] == "welch"
    assert paired["p_value"] == pytest.approx(sps.ttest_rel(cand, full).pvalue) and paired["p_value"] < 0.05
    assert welch["p_value"] > 0.8
    assert paired["verdict"] == "non-inferior" and welch["verdict"] == "inconclusive"


def _sweep(full, cand, cand_bs=16, seeds_cand=None):
    results = [make_result(i, "full", seed=i, test=x, val=x) for i, x in enumerate(full)]
    seeds_cand = seeds_cand or range(len(cand))
    results += [make_result(10 + i, "top_k(k=2)", seed=s, test=x, val=x, batch_size=cand_bs)
                for i, (s, x) in enumerate(zip(seeds_cand, cand))]
    groups = build_groups(results, "accuracy")
    return {s["strategy"]: s for s in summarise(groups, [], ReportConfig(bootstrap_resamples=0), "accuracy")}


def test_summary_pairs_only_same_seeds_and_batch_size():
    full, cand = [0.80, 0.85, 0.90], [0.796, 0.845, 0.894]
    assert _sweep(full, cand)["top_k(k=2)"]["test_method"] == "paired"
    assert _sweep(full, cand, cand_bs=32)["top_k(k=2)"]["test_method"] == "welch"        # other data order
    assert _sweep(full, cand, seeds_cand=[5, 6, 7])["top_k(k=2)"]["test_method"] == "welch"
    line = _sweep(full, cand)["top_k(k=2)"]
    assert line["verdict"] == "non-inferior" and line["seeds_needed"] <= 3


def test_too_few_seeds_is_inconclusive_with_a_note():
    out = compare.difference([0.99], [0.80, 0.81, 0.79], paired=False, margin=M)
    assert out["verdict"] == "inconclusive" and "too few seeds" in out["note"] and out["p_value"] is None
    assert out["diff_vs_full"] == pytest.approx(0.19) and out["seeds_needed"] is None
    line = _sweep([0.8], [0.7, 0.71])["top_k(k=2)"]
    assert line["verdict"] == "inconclusive" and "too few seeds" in line["note"]


def test_zero_variance_is_noted():
    out = compare.difference([0.9, 0.9], [0.8, 0.8], paired=False, margin=M)
    assert out["verdict"] == "superior" and "zero variance" in out["note"]
    assert out["diff_ci_low"] == pytest.approx(0.1) and out["seeds_needed"] == 2


def _power(effect, n, sd_a, sd_b, paired):
    """The textbook power of a one-sided t-test at 0.05, written out here from scipy's noncentral t."""
    if paired:
        df, se = n - 1, sd_a / np.sqrt(n)
    else:
        df = (n - 1) * (sd_a ** 2 + sd_b ** 2) ** 2 / (sd_a ** 4 + sd_b ** 4)
        se = np.sqrt((sd_a ** 2 + sd_b ** 2) / n)
    return 1 - sps.nct.cdf(sps.t.ppf(0.95, df), df, effect / se)


@pytest.mark.parametrize("diff,sd_a,sd_b,paired", [(-0.002, 0.010, 0.015, False), (0.004, 0.02, 0.0, True),
                                                    (-0.016, 0.004, 0.012, False)])
def test_seeds_needed_reaches_80_percent_power_and_one_less_does_not(diff, sd_a, sd_b, paired):
    n = compare.seeds_needed(diff, M, sd_a, sd_b, paired)
    effect = abs(diff + M)                   # distance from the margin, on whichever side diff lies
    assert n is not None and n >= 2
    assert _power(effect, n, sd_a, sd_b, paired) >= 0.8
    assert n == 2 or _power(effect, n - 1, sd_a, sd_b, paired) < 0.8
    assert float(compare.power(effect, n, sd_a, sd_b, paired)) == pytest.approx(_power(effect, n, sd_a, sd_b, paired))


def test_seeds_needed_of_an_inconclusive_comparison():
    a, b = [0.885, 0.890, 0.880], 0.9 + 0.1 * SPREAD
    out = compare.difference(a, b, paired=False, margin=M)
    n = out["seeds_needed"]
    effect = abs(out["diff_vs_full"] + M)
    sd_a, sd_b = np.std(a, ddof=1), np.std(b, ddof=1)
    assert n > 3 and _power(effect, n, sd_a, sd_b, False) >= 0.8 > _power(effect, n - 1, sd_a, sd_b, False)
    assert compare.seeds_needed(-M, M, 0.01, 0.01) is None          # the difference sits on the margin


def test_bh_adjustment_equals_scipy_over_the_strategies():
    results = [make_result(i, "full", seed=i, test=x, val=x) for i, x in enumerate([0.80, 0.82, 0.81, 0.83])]
    for j, (name, level) in enumerate([("a", 0.80), ("b", 0.84), ("c", 0.78), ("d", 0.815)]):
        results += [make_result(100 * (j + 1) + i, name, seed=i + 10, test=level + d, val=level + d)
                    for i, d in enumerate([0.0, 0.01, -0.01, 0.004, 0.002][: 3 + j % 2])]
    summary = summarise(build_groups(results, "accuracy"), [], ReportConfig(bootstrap_resamples=0), "accuracy")
    lines = [s for s in summary if s["verdict"] != "baseline"]
    for key in ("p_value", "ni_p_value"):
        raw = [s[key] for s in lines]
        assert all(p is not None for p in raw)
        expected = sps.false_discovery_control(raw, method="bh")
        assert [s[key.replace("_value", "_adj")] for s in lines] == pytest.approx(list(expected))
    assert compare.bh_adjust([None, 0.04, None]) == [None, pytest.approx(0.04), None]
