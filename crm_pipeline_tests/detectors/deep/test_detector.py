"""The deep models behind the detector interface, on the planted daily series."""

import numpy as np
import pytest

from crm_pipeline.detectors.base import DetectorError
from crm_pipeline.detectors.registry import build_detector


def test_features_widen_the_input_and_the_version_names_them(planted):
    plain = build_detector("deepant", {"epochs": 3})
    wide = build_detector("deepant", {"epochs": 3, "features": ["month_avg", "is_monday"]})
    assert plain.version != wide.version
    wide.fit(planted.spiky)
    assert wide.trained_.columns == ("y", "month_avg", "is_monday")
    assert wide.trained_.model.n_features == 3
    with pytest.raises(ValueError, match="unknown feature"):
        build_detector("deepant", {"epochs": 1, "features": ["tomorrow"]}).fit(planted.spiky)


def test_a_continuation_is_read_with_the_training_tail_as_look_back(planted):
    """Scoring the days after the training series gives every day a score, the first too, and
    the same scores as scoring the whole series (the windows are the same)."""
    split = len(planted.spiky) - 50
    detector = build_detector("deepant", {"epochs": 3}).fit(planted.spiky[:split])
    tail = detector.detect(planted.spiky[split:])
    whole = detector.detect(planted.spiky)
    assert len(tail.score) == 50
    np.testing.assert_allclose(tail.score, whole.score[split:], atol=1e-6)
    assert (whole.score[: detector.trained_.model.span - 1] == 0).all()  # no window covers them


def test_bad_parameters_and_short_series_are_refused(planted):
    with pytest.raises(ValueError, match="threshold must be within"):
        build_detector("lstm_autoencoder", {"threshold": 1.5})
    with pytest.raises(ValueError, match="epochs must be at least 1"):
        build_detector("deepant", {"epochs": 0})
    with pytest.raises(DetectorError, match="deepant: 12 time steps after warm-up, at least 30 needed"):
        build_detector("deepant").fit(planted.spiky[:12])
