"""SHAP for the classical tree detectors: which lag features made a flagged day stand out.

shap's TreeExplainer computes exact SHAP values of tree models, fast. What it explains is the
tree model's own output, so each detector says what that output is:

* tree forecasters (``decision_tree``, ``random_forest``): the day's *forecast*, by the model
  that made it when the day was scored (a training day's out-of-fold model), in the series'
  units: the features that set the expectation the day then missed;
* ``isolation_forest``: the day's mean *isolation path length* over the trees; a shorter path
  is more anomalous, so the features with negative values isolated the day.

AdaBoost's weighted median of trees has no exact TreeExplainer rule; it is refused by name.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from crm_pipeline.detectors.base import Detector, SeriesFrame
from crm_pipeline.detectors.clustering import IsolationForestDetector
from crm_pipeline.detectors.forecasting import DecisionTreeDetector, RandomForestDetector, RegressorDetector

#: Detectors whose fitted models TreeExplainer explains exactly, and what their output means.
EXPLAINED_OUTPUT = {
    DecisionTreeDetector.name: "forecast",
    RandomForestDetector.name: "forecast",
    IsolationForestDetector.name: "path_length",
}


@dataclass(frozen=True)
class TreeExplanation:
    """SHAP values of some days of one series: (days, features), with what they add up to."""

    days: np.ndarray
    features: tuple[str, ...]
    values: np.ndarray
    outputs: np.ndarray
    expected: np.ndarray


def check_explainable(name: str) -> None:
    """Refuse a detector TreeExplainer cannot explain, naming the ones it can."""
    if name not in EXPLAINED_OUTPUT:
        raise ValueError(
            f"no tree explanation for detector {name!r}; TreeExplainer explains: "
            f"{', '.join(sorted(EXPLAINED_OUTPUT))}"
        )


def explain_days(detector: Detector, data: SeriesFrame, positions: np.ndarray) -> TreeExplanation:
    """SHAP values of ``data``'s days at ``positions`` under ``detector``, fitted on ``data``
    (or on its past, for a continuation)."""
    check_explainable(detector.name)
    import shap  # heavy; only explanation runs need it

    if isinstance(detector, RegressorDetector):
        values = np.empty((len(positions), data.X.shape[1]))
        outputs, expected = np.empty(len(positions)), np.empty(len(positions))
        for covered, model in detector.forecaster_of(data):
            mine = np.flatnonzero(np.isin(positions, covered))
            if not len(mine):
                continue
            pipeline, target = model.regressor_, model.transformer_
            explainer = shap.TreeExplainer(pipeline[-1])
            x = data.X[positions[mine]]
            scale, mean = float(target.scale_[0]), float(target.mean_[0])
            values[mine] = explainer.shap_values(pipeline[:-1].transform(x), check_additivity=True) * scale
            expected[mine] = float(np.ravel(explainer.expected_value)[0]) * scale + mean
            outputs[mine] = model.predict(x)
        return TreeExplanation(data.days[positions], data.feature_names, values, outputs, expected)
    points = detector.scaler_.transform(data[positions].points(detector.features))
    explainer = shap.TreeExplainer(detector.model_)
    values = explainer.shap_values(points, check_additivity=True)
    base = float(np.ravel(explainer.expected_value)[0])
    names = ("y", *(detector.features or data.feature_names))
    return TreeExplanation(
        data.days[positions], names, values, base + values.sum(axis=1), np.full(len(positions), base)
    )
