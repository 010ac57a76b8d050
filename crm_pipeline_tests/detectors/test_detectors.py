"""Every detector on a clean periodic series and on the same with obvious planted spikes."""

import numpy as np
import pytest

from crm_pipeline.detectors import forecasting
from crm_pipeline.detectors.base import DetectorError, SeriesFrame
from crm_pipeline.detectors.registry import DETECTORS, build_detector
from crm_pipeline.detectors.scoring import DetectorSpec, build_detectors, run_detectors

#: ARIMA on a small grid: the full 0..3 grid is 64 fits, too slow for every test run.
SMALL_ARIMA = {"max_order": 1}


#: Flags a planted spike only when it is the largest of the series: its scores are scaled by the
#: training series' largest error, and the three spikes differ in size (see the ranking test).
RANKS_ONLY = {"lstm_autoencoder"}


def make(name: str):
    return build_detector(name, SMALL_ARIMA if name == "arima" else {})


@pytest.mark.parametrize("name", sorted(set(DETECTORS) - RANKS_ONLY))
def test_finds_planted_spikes_and_stays_quiet_on_a_clean_series(name, planted):
    spiky = make(name).fit(planted.spiky).detect(planted.spiky)
    flagged = set(planted.spiky.days[spiky.flag].tolist())
    assert {d.tolist() for d in planted.spike_days} <= flagged
    clean = make(name).fit(planted.clean).detect(planted.clean)
    # A daily forecaster cannot place the monthly payroll to the day; beyond those, 1 % at most.
    payrolls = sum(d.day == 25 for d in planted.clean.days.tolist())
    allowed = payrolls + 0.01 * len(planted.clean)
    assert clean.flag.sum() <= allowed, f"{name} flags {clean.flag.sum()} of {len(planted.clean)} clean days"
    assert len(clean.score) == len(clean.threshold) == len(planted.clean)


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_fitted_on_the_past_finds_a_spike_in_held_out_days(name, planted):
    """The evaluation protocol's case: fitted on the past, one anomaly in the held-out days."""
    first, second = (int(np.searchsorted(planted.spiky.days, d)) for d in planted.spike_days[:2])
    past, future = planted.spiky[:first], planted.spiky[first:second]
    detection = make(name).fit(past).detect(future)
    assert detection.flag[0], f"{name} misses the spike: score {detection.score[0]}, {detection.threshold[0]}"


@pytest.mark.parametrize("name", sorted(RANKS_ONLY))
def test_ranks_the_planted_spikes_highest(name, planted):
    detection = make(name).fit(planted.spiky).detect(planted.spiky)
    top = set(planted.spiky.days[np.argsort(-detection.score)[: len(planted.spike_days)]].tolist())
    assert top == {d.tolist() for d in planted.spike_days}


@pytest.mark.parametrize("name", ["random_forest", "kmeans", "isolation_forest", "deepant"])
def test_same_seed_same_scores(name, planted):
    first = make(name).fit(planted.spiky).score(planted.spiky)
    assert np.array_equal(first, make(name).fit(planted.spiky).score(planted.spiky))


def test_too_short_and_non_finite_series_are_refused(planted):
    with pytest.raises(DetectorError, match=r"kmeans: 10 time steps after warm-up, at least 30 needed"):
        make("kmeans").fit(planted.clean[:10])
    y = planted.clean.y.copy()
    y[5] = np.nan
    with pytest.raises(DetectorError, match="NaN or infinite"):
        SeriesFrame(planted.clean.days, y, planted.clean.X, planted.clean.feature_names)


@pytest.mark.parametrize("level", [50.0, 0.0], ids=["constant", "all_zero"])
def test_constant_and_all_zero_series(planted, level):
    flat = SeriesFrame(
        planted.clean.days,
        np.full(len(planted.clean), level),
        np.full_like(planted.clean.X, level),
        planted.clean.feature_names,
    )
    for name in ("random_forest", "sgd", "isolation_forest", "agglomerative", "dbscan"):
        assert not make(name).fit(flat).detect(flat).flag.any(), name
    with pytest.raises(DetectorError, match="constant series"):
        make("kmeans").fit(flat)


def test_unknown_detector_or_parameter_is_refused_before_any_work():
    with pytest.raises(ValueError, match=r"unknown detector 'lof'; known detectors: adaboost, .*svr"):
        build_detectors([DetectorSpec("kmeans"), DetectorSpec("lof")])
    with pytest.raises(ValueError, match=r"detector 'kmeans': bad parameters \{'clusters': 3\}"):
        build_detector("kmeans", {"clusters": 3})
    with pytest.raises(ValueError, match="svr: kernel must be"):
        build_detector("svr", {"kernel": "sigmoid"})
    with pytest.raises(ValueError, match="same label: sgd/additive"):
        build_detectors([DetectorSpec("sgd"), DetectorSpec("sgd", {"k": 4})])
    with pytest.raises(ValueError, match="no detector chosen"):
        build_detectors([])


def test_arima_that_never_converges_is_recorded_and_the_others_go_on(planted, monkeypatch):
    def never(y, order):
        raise ValueError("did not converge: Maximum Likelihood optimization failed to converge")

    monkeypatch.setattr(forecasting, "_fit", never)
    detectors = build_detectors([DetectorSpec("arima", SMALL_ARIMA), DetectorSpec("kmeans")])
    arima, kmeans = run_detectors("db1.SPIKY", "amount_out", planted.spiky, detectors)
    assert arima.error.startswith("DetectorError: arima: no order of the grid could be fitted")
    assert "did not converge" in arima.error and len(arima.score) == 0
    assert kmeans.error is None and len(kmeans.score) == len(planted.spiky)


def test_arima_picks_an_order_from_the_grid(planted):
    arima = make("arima").fit(planted.clean)
    assert all(0 <= x <= 1 for x in arima.order_)


def test_cluster_quality_is_reported(planted):
    kmeans = make("kmeans").fit(planted.spiky)
    assert set(kmeans.quality_) == {"silhouette", "davies_bouldin", "calinski_harabasz"}
    assert -1 <= kmeans.quality_["silhouette"] <= 1
