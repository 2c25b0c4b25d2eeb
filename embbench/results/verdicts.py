"""Verdicts on two labels' cells that hold their false-positive rate with few repeats (issue 11).

Metrics are positive (rps, latency), so everything is done on logs: a verdict is about the ratio
b / a. Repeat r of label a and repeat r of label b run close in time, so `compare_paired` takes
log(b_r / a_r) per repeat and puts a Student t interval on their mean: the machine's drift from
one repeat to the next is shared by both labels of a repeat and cancels. `compare_unpaired`
(Welch t on the logs) is for values with no pairing, such as two different runs.

Where no valid interval exists the word is "too few repeats", never "significant". The t
quantile is computed here (it predates scipy as a dependency); the binomial CDF is scipy's.

Pure maths, in results/ so that both sides of the record use one copy: report/ (its sections and
stats) and run/ (`--repeats auto` decides
whether a comparison needs another repeat with the same test: results/sequential.py).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from statistics import NormalDist

from scipy.stats import binom

SIGNIFICANT = "significant"
TIE = "tie"
TOO_FEW = "too few repeats"
PAIRED = "paired t on log ratios"
WELCH = "Welch t on logs"
NONE = "none"

CONFIDENCE = 0.95
# A label whose repeats vary by more than this is flagged: its comparisons need more repeats.
UNSTABLE_CV = 0.10
MIN_TAIL_REQUESTS = 1000
# A spread of logs below this is floating-point rounding of identical ratios, not noise.
_ZERO_SPREAD = 1e-12


@dataclass(frozen=True)
class Comparison:
    """b against a: the ratio, its interval, and the verdict (`word`) they give. noise_pct is
    exp(h) - 1 in %, h the interval's half-width in logs: the smallest ratio above 1 that this
    comparison would have called significant."""

    ratio: float  # b / a: geometric mean of the paired ratios, or ratio of geometric means
    low: float  # the confidence interval of the ratio; nan when there is none
    high: float
    n: int  # pairs used, or the smaller side when unpaired
    method: str
    word: str  # SIGNIFICANT, TIE or TOO_FEW
    noise_pct: float  # nan when there is no interval

    @property
    def significant(self) -> bool:
        return self.word == SIGNIFICANT

    def describe(self) -> str:
        if self.word == SIGNIFICANT:
            return f"{self.ratio:.2f}× ({self.low:.2f}–{self.high:.2f}), significant"
        if self.word == TIE:
            return f"tie within noise (±{_pct(self.noise_pct)} %)"
        return f"too few repeats (n={self.n})"


def compare_paired(
    a: Sequence[float], b: Sequence[float], confidence: float = CONFIDENCE
) -> Comparison:
    """b against a, pairing a[r] with b[r]; a t interval on the mean of log(b / a), n - 1 df.

    Pairs where either value is not finite or not positive are dropped. Fewer than two pairs
    give "too few repeats". If every pair has the same log ratio (no spread at all), see
    `_no_spread`.
    """
    _check_level(confidence)
    # Not strict: a repeat missing on one side (a failed cell) has no partner and is dropped.
    logs = [
        math.log(y) - math.log(x) for x, y in zip(a, b, strict=False) if _usable(x) and _usable(y)
    ]
    n = len(logs)
    if n < 2:
        return _too_few(math.exp(logs[0]) if logs else math.nan, n)
    mean = math.fsum(logs) / n
    sd = _sd(logs, mean)
    if sd <= _ZERO_SPREAD:
        return _no_spread(mean, n, PAIRED)
    return _interval(mean, sd / math.sqrt(n), n - 1, n, confidence, PAIRED)


def compare_unpaired(
    a: Sequence[float], b: Sequence[float], confidence: float = CONFIDENCE
) -> Comparison:
    """b against a with no pairing: Welch t on the logs, Welch–Satterthwaite df.

    Needs at least two usable (finite, positive) values on each side, else "too few repeats".
    """
    _check_level(confidence)
    la = [math.log(x) for x in a if _usable(x)]
    lb = [math.log(y) for y in b if _usable(y)]
    n = min(len(la), len(lb))
    mean = math.fsum(lb) / len(lb) - math.fsum(la) / len(la) if n else math.nan
    if n < 2:
        return _too_few(math.exp(mean), n)
    va = _sd(la, math.fsum(la) / len(la)) ** 2 / len(la)
    vb = _sd(lb, math.fsum(lb) / len(lb)) ** 2 / len(lb)
    if math.sqrt(va + vb) <= _ZERO_SPREAD:
        return _no_spread(mean, n, WELCH)
    df = (va + vb) ** 2 / (va**2 / (len(la) - 1) + vb**2 / (len(lb) - 1))
    return _interval(mean, math.sqrt(va + vb), df, n, confidence, WELCH)


def detectable_pct(
    values_a: Sequence[float],
    values_b: Sequence[float],
    confidence: float = CONFIDENCE,
    paired: bool = True,
) -> float:
    """The smallest difference in % this run could have called significant (nan if none).

    It is the half-width of the verdict's interval, so it is there for ties too: a report can
    say "no difference larger than ±x % here" instead of just "not significant".
    """
    compare = compare_paired if paired else compare_unpaired
    return compare(values_a, values_b, confidence).noise_pct


def cv(values: Sequence[float]) -> float:
    """Sample standard deviation over mean of the finite values; nan with fewer than two."""
    data = [v for v in values if math.isfinite(v)]
    if len(data) < 2:
        return math.nan
    mean = math.fsum(data) / len(data)
    return _sd(data, mean) / mean if mean > 0 else math.nan


def unstable(values: Sequence[float]) -> bool:
    """True when the repeats vary more than UNSTABLE_CV; unknown (fewer than two) is not."""
    spread = cv(values)
    return not math.isnan(spread) and spread > UNSTABLE_CV


def repeats_needed(
    cv: float, effect: float = 0.10, confidence: float = CONFIDENCE, power: float = 0.8
) -> int:
    """Paired repeats needed to detect a ratio of 1 + effect with the given power.

    `cv` is one label's repeat-to-repeat coefficient of variation. The sd of a paired log
    difference is taken as sqrt(2)·log(1 + cv), the value for independent noise on both
    sides: conservative, since drift shared within a repeat cancels in a pair. The usual
    iteration n >= ((t(1 - α/2, n - 1) + t(power, n - 1))·sd / log(1 + effect))².
    """
    if not (math.isfinite(cv) and cv >= 0 and math.isfinite(effect) and effect > 0):
        raise ValueError(f"need cv >= 0 and effect > 0, got cv={cv}, effect={effect}")
    _check_level(confidence)
    _check_level(power)
    sd = math.sqrt(2) * math.log1p(cv)
    if sd == 0:
        return 3  # identical log ratios are only called significant from three pairs on
    scale = sd / math.log1p(effect)
    alpha = 1 - confidence
    # The normal answer is a lower bound (t quantiles exceed z), so start there.
    z = NormalDist().inv_cdf(1 - alpha / 2) + NormalDist().inv_cdf(power)
    n = max(2, math.ceil((z * scale) ** 2))
    while n < ((t_quantile(1 - alpha / 2, n - 1) + t_quantile(power, n - 1)) * scale) ** 2:
        n += 1
    return n


def tail_imprecise(requests: int, quantile: float = 0.99) -> bool:
    """True when a cell has too few requests for its `quantile` latency to mean much.

    MLPerf LoadGen's early-stopping floor for a p99 at 99 % confidence (loadgen/early_stopping.cc)
    is 662 queries: the smallest n for which the second-largest of n latencies is an upper
    bound of the true p99 with 99 % confidence, P(Binomial(n, 0.01) <= 1) <= 0.01 (459 for the
    largest alone; `min_requests_for_quantile` computes both). That only bounds the p99 from
    above. We ask for MIN_TAIL_REQUESTS = 1000 at p99, about ten requests beyond it: then the
    983rd and 997th of the 1000 sorted latencies (the sample's p98.3 and p99.7) bracket the
    true p99 with 97.6 % probability, whatever the distribution. Other quantiles scale to the
    same ten requests in the tail.
    """
    if not 0.0 < quantile < 1.0:
        raise ValueError(f"quantile must be in (0, 1), got {quantile}")
    # round: 1 - quantile is inexact in binary, and ceil would turn 200.00000000000003 into 201.
    needed = math.ceil(round(MIN_TAIL_REQUESTS * (1 - 0.99) / (1 - quantile), 9))
    return requests < needed


def min_requests_for_quantile(
    quantile: float = 0.99, confidence: float = 0.99, beyond: int = 1
) -> int:
    """Smallest n whose (beyond + 1)-th largest sample bounds `quantile` from above.

    That is the smallest n with P(Binomial(n, 1 - quantile) <= beyond) <= 1 - confidence, the
    rule of LoadGen's early stopping: 662 for a p99 at 99 % with beyond=1, 459 with beyond=0.
    """
    _check_level(quantile)
    _check_level(confidence)
    if beyond < 0:
        raise ValueError(f"beyond must be >= 0, got {beyond}")
    lo, hi = beyond + 1, 2 * (beyond + 1)
    while binom.cdf(beyond, hi, 1 - quantile) > 1 - confidence:
        lo, hi = hi, 2 * hi
    while lo < hi:  # the cdf falls as n grows: bisect for the first n that passes
        mid = (lo + hi) // 2
        if binom.cdf(beyond, mid, 1 - quantile) > 1 - confidence:
            lo = mid + 1
        else:
            hi = mid
    return lo


@lru_cache(maxsize=1024)
def t_quantile(p: float, df: float) -> float:
    """The p quantile of Student's t with df (possibly fractional) degrees of freedom.

    Newton's method on the upper tail 0.5·I_x(df/2, 1/2), x = df / (df + t²), from a
    Cornish–Fisher start. For t > 0 the tail is decreasing and convex, so after the first step
    every iterate sits left of the root and climbs to it: no bracketing needed.
    """
    if not (0.0 < p < 1.0 and df > 0):
        raise ValueError(f"need 0 < p < 1 and df > 0, got p={p}, df={df}")
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    if p == 0.5:
        return 0.0
    if df == 1:
        return math.tan(math.pi * (p - 0.5))
    if df == 2:
        return (2 * p - 1) / math.sqrt(2 * p * (1 - p))
    if df > 1e5:  # the expansion's error is O(df⁻⁵) there; the beta fraction would be slow
        return _cornish_fisher(p, df)
    target = 1.0 - p
    log_norm = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
    t = max(_cornish_fisher(p, df), 0.0)
    for _ in range(100):
        tail = 0.5 * _betainc(df / 2, 0.5, df / (df + t * t), t * t / (df + t * t))
        pdf = math.exp(log_norm - (df + 1) / 2 * math.log1p(t * t / df))
        step = (tail - target) / pdf
        t = max(t + step, 0.0)
        if abs(step) <= 1e-13 * max(1.0, t):
            break
    return t


def _interval(
    mean: float, se: float, df: float, n: int, confidence: float, method: str
) -> Comparison:
    half = t_quantile(1 - (1 - confidence) / 2, df) * se
    low, high = mean - half, mean + half
    word = SIGNIFICANT if low > 0 or high < 0 else TIE
    noise = math.expm1(half) * 100
    return Comparison(math.exp(mean), math.exp(low), math.exp(high), n, method, word, noise)


def _no_spread(mean: float, n: int, method: str) -> Comparison:
    """Identical log ratios in every pair: the t interval has zero width and can't be trusted.

    This happens only with values on a grid (rounded latencies), and then it can happen under
    the null: for exchangeable labels the chance that all n differences equal one nonzero step
    is at most (1/4)^(n-1); two values at 50 % each give 2·(1/4)^n, and a numerical search
    over distributions on up to 8 grid points found at most 13 % at n = 2 and 3.2 % at n = 3.
    So: equal values are a tie; a shared nonzero difference is significant from three pairs
    on, and "too few repeats" below.
    """
    ratio = math.exp(mean)
    if abs(mean) <= _ZERO_SPREAD:
        return Comparison(1.0, 1.0, 1.0, n, method, TIE, 0.0)
    if n < 3:
        return _too_few(ratio, n)
    return Comparison(ratio, ratio, ratio, n, method, SIGNIFICANT, 0.0)


def _too_few(ratio: float, n: int) -> Comparison:
    return Comparison(ratio, math.nan, math.nan, n, NONE, TOO_FEW, math.nan)


# Nothing to compare with (no baseline cell at a level): too few repeats, no ratio.
NO_PAIRS = _too_few(math.nan, 0)


def _usable(value: float) -> bool:
    return math.isfinite(value) and value > 0


def _sd(data: Sequence[float], mean: float) -> float:
    return math.sqrt(math.fsum((v - mean) ** 2 for v in data) / (len(data) - 1))


def _pct(value: float) -> str:
    return f"{value:.0f}" if value >= 1 else f"{value:.1f}"


def _check_level(level: float) -> None:
    if not 0.0 < level < 1.0:
        raise ValueError(f"a level must be in (0, 1), got {level}")


def _cornish_fisher(p: float, df: float) -> float:
    """Abramowitz & Stegun 26.7.5: t from the normal quantile, in powers of 1/df."""
    z = NormalDist().inv_cdf(p)
    z2 = z * z
    g1 = z * (z2 + 1) / 4
    g2 = z * ((5 * z2 + 16) * z2 + 3) / 96
    g3 = z * (((3 * z2 + 19) * z2 + 17) * z2 - 15) / 384
    g4 = z * ((((79 * z2 + 776) * z2 + 1482) * z2 - 1920) * z2 - 945) / 92160
    return z + (g1 + (g2 + (g3 + g4 / df) / df) / df) / df


def _betainc(a: float, b: float, x: float, y: float) -> float:
    """Regularized incomplete beta I_x(a, b), y = 1 - x given apart for precision near 1."""
    if x <= 0:
        return 0.0
    if y <= 0:
        return 1.0
    front = math.exp(
        a * math.log(x) + b * math.log(y) + math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
    )
    # The continued fraction converges fast below (a + 1) / (a + b + 2); use symmetry above.
    if x < (a + 1) / (a + b + 2):
        return front * _beta_fraction(a, b, x) / a
    return 1.0 - front * _beta_fraction(b, a, y) / b


def _beta_fraction(a: float, b: float, x: float) -> float:
    """The continued fraction of I_x(a, b), by the modified Lentz method."""
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 1000):
        for num in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return h
