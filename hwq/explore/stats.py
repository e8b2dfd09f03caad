"""Accuracy as a measurement: binomial confidence intervals, and whether two points differ.

With 450 test images one image is 0.22 %, so two points a few images apart may not be told
apart. :func:`wilson` gives each accuracy its 95 % interval (Wilson, "Probable inference, the
law of succession, and statistical inference", JASA 22, 1927); :func:`mcnemar` compares two
points on the *same* images (exact McNemar test: a two-sided binomial test on the images one
gets right and the other wrong, McNemar, Psychometrika 12, 1947), which is sharper than
comparing their intervals.
"""

import math

__all__ = ["wilson", "mcnemar", "distinguishable", "ALPHA"]

#: significance level of :func:`distinguishable`
ALPHA = 0.05


def wilson(correct, total, z=1.96):
    """``(low, high)``: the Wilson score interval of ``correct`` successes in ``total`` trials,
    as fractions (``z = 1.96``: 95 %).

    Raises
    ------
    ValueError
        If ``total < 1`` or ``correct`` is outside ``0 .. total``.
    """
    if total < 1 or not 0 <= correct <= total:
        raise ValueError(f"need 0 <= correct <= total and total >= 1, not {correct} of {total}")
    p = correct / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return max(0.0, centre - half), min(1.0, centre + half)


def mcnemar(outcomes_a, outcomes_b):
    """Two-sided p-value of the exact McNemar test of two classifiers on the same samples.

    Parameters
    ----------
    outcomes_a, outcomes_b : str
        One ``"1"`` (right) or ``"0"`` (wrong) per sample, in the same sample order.

    Returns
    -------
    float
        The probability, if both were equally accurate, of discordant counts at least this
        unbalanced (1.0 when no sample is discordant).

    Raises
    ------
    ValueError
        If the two strings differ in length.
    """
    if len(outcomes_a) != len(outcomes_b):
        raise ValueError(f"outcomes of {len(outcomes_a)} and {len(outcomes_b)} samples: not the same samples")
    only_a = sum(1 for a, b in zip(outcomes_a, outcomes_b) if a == "1" and b == "0")
    only_b = sum(1 for a, b in zip(outcomes_a, outcomes_b) if a == "0" and b == "1")
    if only_a + only_b == 0:
        return 1.0
    from scipy.stats import binomtest
    return float(binomtest(only_a, only_a + only_b, 0.5).pvalue)


def distinguishable(outcomes_a, outcomes_b, alpha=ALPHA):
    """Whether two points' accuracies differ at level ``alpha`` (:func:`mcnemar`)."""
    return mcnemar(outcomes_a, outcomes_b) < alpha
