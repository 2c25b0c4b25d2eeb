"""Verdicts (issue 11): A/A false-positive rates, power, and the edge cases.

The Monte-Carlo tests draw repeats from lognormal distributions with a fixed seed, so they are
deterministic. With 4000 draws the standard error of a 5 % rate is 0.34 points, so "at most
5 %" is asserted as <= 0.06 (three standard errors).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt
import pytest

from embbench.results.verdicts import (
    MIN_TAIL_REQUESTS,
    NONE,
    PAIRED,
    SIGNIFICANT,
    TIE,
    TOO_FEW,
    UNSTABLE_CV,
    WELCH,
    Comparison,
    compare_paired,
    compare_unpaired,
    cv,
    detectable_pct,
    min_requests_for_quantile,
    repeats_needed,
    t_quantile,
    tail_imprecise,
    unstable,
)

Compare = Callable[[Sequence[float], Sequence[float]], Comparison]
Array = npt.NDArray[np.float64]

SEED = 20261125
DRAWS = 4000
NOISE_CV = 0.09  # the machine's measured repeat-to-repeat noise
MAX_FALSE_POSITIVES = 0.06


def _log_sd(noise: float) -> float:
    """The sd of log(x) for a lognormal x with this coefficient of variation."""
    return math.sqrt(math.log1p(noise * noise))


def _experiments(
    n: int, noise: float, shift: float = 1.0, drift_cv: float = 0.0, draws: int = DRAWS
) -> tuple[Array, Array]:
    """`draws` experiments of n repeats per label: rows of a and b, b scaled by `shift`.

    With drift, both labels of repeat r share one random machine-speed factor.
    """
    rng = np.random.default_rng(SEED)
    a = 100.0 * np.exp(rng.normal(0.0, _log_sd(noise), (draws, n)))
    b = 100.0 * shift * np.exp(rng.normal(0.0, _log_sd(noise), (draws, n)))
    if drift_cv:
        drift = np.exp(rng.normal(0.0, _log_sd(drift_cv), (draws, n)))
        a, b = a * drift, b * drift
    return a, b


def _rate(compare: Compare, a: Array, b: Array) -> float:
    """The share of experiments called significant."""
    hits = sum(
        compare(x.tolist(), y.tolist()).word == SIGNIFICANT for x, y in zip(a, b, strict=True)
    )
    return hits / len(a)


# --- A/A: one configuration under two labels -------------------------------------------------


@pytest.mark.parametrize("drift_cv", [0.0, NOISE_CV], ids=["no-drift", "drift"])
@pytest.mark.parametrize("n", [2, 3, 5])
def test_paired_aa_false_positives_hold_the_level(n: int, drift_cv: float) -> None:
    # The paired t is exact for lognormal repeats, so the rate is 5 % and not much less:
    # a shared drift cancels in each pair and leaves it unchanged.
    rate = _rate(compare_paired, *_experiments(n, NOISE_CV, drift_cv=drift_cv))
    assert 0.04 <= rate <= MAX_FALSE_POSITIVES, f"A/A false-positive rate {rate:.4f} (n={n})"


@pytest.mark.parametrize("drift_cv", [0.0, NOISE_CV], ids=["no-drift", "drift"])
@pytest.mark.parametrize("n", [2, 3, 5])
def test_unpaired_aa_false_positives_hold_the_level(n: int, drift_cv: float) -> None:
    # Welch is slightly conservative here; a shared drift makes it more so (it counts the drift
    # as noise on both sides although it cancels in the difference).
    rate = _rate(compare_unpaired, *_experiments(n, NOISE_CV, drift_cv=drift_cv))
    assert rate <= MAX_FALSE_POSITIVES, f"A/A false-positive rate {rate:.4f} (n={n})"


def _old_bootstrap_significant(a: Array, b: Array, rng: np.random.Generator) -> bool:
    """The replaced method: percentile bootstrap of median(b) / median(a), 4000 resamples."""
    n = len(a)
    med_a = np.median(a[rng.integers(0, n, (4000, n))], axis=1)
    med_b = np.median(b[rng.integers(0, n, (4000, n))], axis=1)
    low, high = np.quantile(med_b / med_a, [0.025, 0.975])
    return bool(low > 1.0 or high < 1.0)


@pytest.mark.parametrize(("n", "floor"), [(2, 0.25), (3, 0.075)])
def test_old_bootstrap_of_medians_fails_aa(n: int, floor: float) -> None:
    # Why the method changed. With 2-3 values its interval is about [min b / max a,
    # max b / min a], so an A/A pair is "significant" whenever the two ranges do not overlap:
    # 2 / C(2n, n) of the time, 1/3 for n = 2 and 1/10 for n = 3.
    a, b = _experiments(n, NOISE_CV, draws=1000)
    rng = np.random.default_rng(SEED)
    old = sum(_old_bootstrap_significant(x, y, rng) for x, y in zip(a, b, strict=True)) / len(a)
    new = _rate(compare_paired, a, b)
    assert old >= floor, f"old method A/A rate {old:.3f}, new {new:.3f} (n={n})"
    assert old >= 1.5 * new, f"old method A/A rate {old:.3f}, new {new:.3f} (n={n})"


# --- Power: a real 20 % difference -----------------------------------------------------------

# Expected power of the paired t for b = 1.2·a with independent lognormal noise of this CV on
# each label: noncentral t with n - 1 df and noncentrality log(1.2) / (√2·σ / √n), computed
# with scipy.stats.nct. n = 3 at 5 % and n = 5 at 9 % are there to show that they are not
# enough; the others are where a decision can be made.
POWER_CASES = [
    (0.03, 3, 0.936),
    (0.05, 3, 0.641),
    (0.05, 5, 0.986),
    (0.09, 5, 0.675),
    (0.09, 8, 0.933),
]


@pytest.mark.parametrize(("noise", "n", "expected"), POWER_CASES)
def test_paired_power_matches_theory(noise: float, n: int, expected: float) -> None:
    rate = _rate(compare_paired, *_experiments(n, noise, shift=1.2))
    assert abs(rate - expected) <= 0.03, f"detected {rate:.4f}, theory {expected} (n={n})"
    if expected >= 0.9:
        assert rate >= 0.9, f"detected {rate:.4f} (cv={noise}, n={n})"


def test_pairing_absorbs_drift() -> None:
    # 9.5 % noise per label, mostly a machine drift shared within a repeat (9 %, with 3 % of
    # the label's own): pairs see only the 3 %, Welch sees all of it.
    a, b = _experiments(3, 0.03, shift=1.2, drift_cv=NOISE_CV)
    paired, unpaired = _rate(compare_paired, a, b), _rate(compare_unpaired, a, b)
    assert paired >= 0.9, f"paired detected {paired:.4f}, Welch {unpaired:.4f}"
    assert unpaired <= 0.6, f"paired detected {paired:.4f}, Welch {unpaired:.4f}"


def test_latency_drop_is_detected_below_one() -> None:
    rate = _rate(compare_paired, *_experiments(5, 0.05, shift=0.8))
    assert rate >= 0.95, f"detected {rate:.4f}"
    verdict = compare_paired([10.0, 10.4, 9.7], [8.0, 8.3, 7.8])
    assert verdict.word == SIGNIFICANT and verdict.high < 1.0


def test_repeats_needed_gives_the_power_it_promises() -> None:
    n = repeats_needed(0.05, effect=0.20)
    rate = _rate(compare_paired, *_experiments(n, 0.05, shift=1.2))
    assert rate >= 0.8, f"{n} repeats detected {rate:.4f}"


def test_fixed_twenty_percent_is_significant() -> None:
    a = [100.0, 104.0, 97.0, 102.0, 99.0]
    b = [120.5, 124.0, 116.8, 122.1, 119.0]
    verdict = compare_paired(a, b)
    assert verdict.word == SIGNIFICANT and verdict.method == PAIRED and verdict.n == 5
    assert verdict.ratio == pytest.approx(1.2, abs=0.005)
    assert verdict.low < verdict.ratio < verdict.high and verdict.low > 1.0
    assert verdict.describe() == "1.20× (1.19–1.21), significant"
    welch = compare_unpaired(a, b)
    assert welch.word == SIGNIFICANT and welch.method == WELCH
    assert welch.ratio == pytest.approx(1.2, abs=0.005)


# --- Edge cases --------------------------------------------------------------------------------


def test_one_pair_is_too_few() -> None:
    verdict = compare_paired([100.0], [120.0])
    assert (verdict.word, verdict.n, verdict.method) == (TOO_FEW, 1, NONE)
    assert verdict.ratio == pytest.approx(1.2)
    assert math.isnan(verdict.low) and math.isnan(verdict.high) and math.isnan(verdict.noise_pct)
    assert verdict.describe() == "too few repeats (n=1)"
    assert compare_paired([], []).describe() == "too few repeats (n=0)"
    assert compare_unpaired([100.0, 101.0], [120.0]).word == TOO_FEW


def test_unusable_values_are_dropped() -> None:
    a = [100.0, math.nan, 0.0, 101.0, 99.0, -5.0, math.inf]
    b = [120.0, 120.0, 120.0, 121.0, 119.0, 120.0, 120.0, 500.0]  # one extra, unpaired
    assert compare_paired(a, b).n == 3
    assert compare_unpaired(a, b).n == 3  # the smaller side: a keeps 100, 101 and 99
    assert compare_paired([100.0, math.nan], [120.0, 118.0]).word == TOO_FEW


def test_identical_ratios() -> None:
    # No spread: equal is a tie, a shared difference needs three pairs (see _no_spread).
    assert compare_paired([100.0] * 3, [100.0] * 3).describe() == "tie within noise (±0.0 %)"
    three = compare_paired([100.0] * 3, [120.0] * 3)
    assert three.word == SIGNIFICANT and three.ratio == pytest.approx(1.2)
    assert three.noise_pct == 0.0
    assert compare_paired([100.0] * 2, [120.0] * 2).word == TOO_FEW
    # Identical up to floating-point rounding counts as identical.
    assert compare_paired([12.0, 24.0], [13.0, 26.0]).word == TOO_FEW
    assert compare_paired([12.0, 24.0, 36.0], [13.0, 26.0, 39.0]).word == SIGNIFICANT
    assert compare_unpaired([100.0] * 3, [120.0] * 3).word == SIGNIFICANT
    assert compare_unpaired([100.0] * 2, [120.0] * 2).word == TOO_FEW


def test_describe() -> None:
    assert (
        Comparison(1.23, 1.10, 1.38, 5, PAIRED, SIGNIFICANT, 11.8).describe()
        == "1.23× (1.10–1.38), significant"
    )
    assert Comparison(1.01, 0.95, 1.07, 3, PAIRED, TIE, 7.2).describe() == "tie within noise (±7 %)"
    assert Comparison(1.0, 0.99, 1.01, 3, PAIRED, TIE, 0.42).describe() == (
        "tie within noise (±0.4 %)"
    )


def test_tie_has_a_noise_floor() -> None:
    a, b = [100.0, 104.0, 97.0], [103.0, 99.0, 101.0]
    verdict = compare_paired(a, b)
    assert verdict.word == TIE and verdict.low < 1.0 < verdict.high
    assert detectable_pct(a, b) == pytest.approx(verdict.noise_pct)
    assert verdict.noise_pct == pytest.approx((verdict.high / verdict.ratio - 1) * 100)
    assert detectable_pct(a, b, paired=False) == compare_unpaired(a, b).noise_pct
    assert math.isnan(detectable_pct([100.0], [101.0]))


def test_cv_and_unstable() -> None:
    assert math.isnan(cv([100.0])) and math.isnan(cv([100.0, math.nan]))
    assert cv([90.0, 100.0, 110.0]) == pytest.approx(0.1)
    assert unstable([80.0, 100.0, 120.0]) and not unstable([99.0, 100.0, 101.0])
    assert not unstable([100.0])
    assert UNSTABLE_CV == 0.10


def test_repeats_needed_is_monotonic() -> None:
    cvs = [0.01, 0.03, 0.05, 0.09, 0.15, 0.3]
    by_cv = [repeats_needed(c, effect=0.10) for c in cvs]
    assert by_cv == sorted(by_cv) and by_cv[0] < by_cv[-1]
    effects = [0.02, 0.05, 0.10, 0.20, 0.50]
    by_effect = [repeats_needed(0.05, effect=e) for e in effects]
    assert by_effect == sorted(by_effect, reverse=True) and by_effect[0] > by_effect[-1]
    assert [repeats_needed(c, 0.10) for c in (0.03, 0.05, 0.09)] == [4, 7, 15]
    assert [repeats_needed(c, 0.20) for c in (0.03, 0.05, 0.09)] == [3, 4, 6]
    assert repeats_needed(0.05, 0.10, power=0.95) > repeats_needed(0.05, 0.10)
    with pytest.raises(ValueError):
        repeats_needed(-0.1)
    with pytest.raises(ValueError):
        repeats_needed(0.05, effect=0.0)


def test_tail_precision() -> None:
    assert MIN_TAIL_REQUESTS == 1000
    assert tail_imprecise(999) and not tail_imprecise(1000)
    assert tail_imprecise(199, quantile=0.95) and not tail_imprecise(200, quantile=0.95)
    # LoadGen's early-stopping floors at 99 % confidence: p99 with the second-largest sample
    # (662), with the largest (459), and p90 (64).
    assert min_requests_for_quantile(0.99, 0.99) == 662
    assert min_requests_for_quantile(0.99, 0.99, beyond=0) == 459
    assert min_requests_for_quantile(0.90, 0.99) == 64


@pytest.mark.parametrize(
    ("df", "expected"), [(1, 12.706), (2, 4.303), (3, 3.182), (4, 2.776), (9, 2.262), (30, 2.042)]
)
def test_t_quantile_known_values(df: int, expected: float) -> None:
    assert t_quantile(0.975, df) == pytest.approx(expected, abs=5e-4)
    assert t_quantile(0.025, df) == -t_quantile(0.975, df)


def test_t_quantile_fractional_df_and_limits() -> None:
    assert t_quantile(0.975, 1e6) == pytest.approx(1.959966, abs=1e-5)
    assert t_quantile(0.5, 3) == 0.0
    with pytest.raises(ValueError):
        t_quantile(1.0, 3)
    stats = pytest.importorskip("scipy.stats")
    for df in (1.3, 2.5, 3.7, 7.7, 14.2, 250.0):
        for p in (0.6, 0.8, 0.95, 0.975, 0.995):
            assert t_quantile(p, df) == pytest.approx(stats.t.ppf(p, df), rel=1e-9)
