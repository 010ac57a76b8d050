"""The four threshold criteria on hand-computed examples."""

import numpy as np
import pytest

from crm_pipeline.detectors.thresholds import Criterion, rolling_sigma

NONE = np.empty(0)


def test_multiplicative_flags_both_ways_positive_only_upwards():
    y, forecast = np.array([10.0, 25.0, 4.0, -20.0]), np.full(4, 10.0)
    both = Criterion("multiplicative", tau=1.0).apply(y, forecast, NONE, floor=0.1)
    assert both.score.tolist() == [0, 15, 6, 30]
    assert both.threshold.tolist() == [10, 10, 10, 10]
    assert both.flag.tolist() == [False, True, False, True]
    up = Criterion("multiplicative_positive", tau=1.0).apply(y, forecast, NONE, floor=0.1)
    assert up.score.tolist() == [0, 15, 0, 0]
    assert up.flag.tolist() == [False, True, False, False]


def test_rolling_sigma_reads_only_earlier_residuals():
    residual = np.array([1.0, -1.0, 1.0, -1.0, 10.0])
    sigma = rolling_sigma(residual, NONE, window=3)
    # step 2: std(1, -1) = 1; steps 3 and 4: std of three alternating +-1 = sqrt(8/9)
    assert sigma == pytest.approx([0, 0, 1, np.sqrt(8 / 9), np.sqrt(8 / 9)])
    seeded = rolling_sigma(np.array([10.0]), np.array([1.0, -1.0, 1.0, -1.0]), window=3)
    assert seeded == pytest.approx([np.sqrt(8 / 9)])


def test_additive_uses_k_rolling_sigma_and_the_floor():
    residual = np.array([1.0, -1.0, 1.0, -1.0, 10.0])
    out = Criterion("additive", k=3.0, window=3).apply(residual, np.zeros(5), NONE, floor=0.5)
    assert out.threshold == pytest.approx([0.5, 0.5, 3.0, 3 * np.sqrt(8 / 9), 3 * np.sqrt(8 / 9)])
    assert out.flag.tolist() == [True, True, False, False, True]


def test_additive_absolute_uses_the_training_residuals_sigma():
    history = np.array([2.0, -2.0, 2.0, -2.0])  # std 2
    out = Criterion("additive_absolute", k=2.0).apply(np.array([3.0, 5.0]), np.zeros(2), history, floor=0.1)
    assert out.threshold.tolist() == [4.0, 4.0]
    assert out.flag.tolist() == [False, True]


def test_floor_keeps_a_flat_series_quiet():
    wobble = np.array([0.0, 0.0, 0.0, 0.001, 0.0])
    for kind in ("multiplicative", "additive", "multiplicative_positive", "additive_absolute"):
        assert not Criterion(kind).apply(wobble, np.zeros(5), NONE, floor=0.05).flag.any(), kind


def test_bad_criterion_is_refused():
    with pytest.raises(ValueError, match="unknown threshold criterion 'median'"):
        Criterion("median")
    with pytest.raises(ValueError, match="tau and k must be > 0"):
        Criterion("additive", k=0)
