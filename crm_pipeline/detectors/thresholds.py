"""The four threshold criteria of the forecasting detectors (Soro, Mellia, Russo).

Each turns a forecast into a score and a threshold per time step, from the residual
``r = y - y_hat``:

* ``multiplicative``          |r| > tau * |y_hat|      (the value strays by a share of the forecast)
* ``additive``                |r| > k * sigma_t        (sigma_t: std of the ``window`` previous residuals)
* ``multiplicative_positive``  r  > tau * |y_hat|      (upward excursions only)
* ``additive_absolute``       |r| > k * sigma          (sigma: std of the training residuals)

Every bound is at least the sigma floor (see ``base.scale_floor``): a flat series, whose
forecast or sigma is near zero, does not flag every wobble.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from crm_pipeline.detectors.base import Detection

CRITERIA = ("multiplicative", "additive", "multiplicative_positive", "additive_absolute")


@dataclass(frozen=True)
class Criterion:
    """One threshold criterion with its parameters."""

    kind: str = "additive"
    tau: float = 1.0
    k: float = 3.0
    window: int = 30

    def __post_init__(self) -> None:
        if self.kind not in CRITERIA:
            raise ValueError(
                f"unknown threshold criterion {self.kind!r}; choose one of {', '.join(CRITERIA)}"
            )
        if self.tau <= 0 or self.k <= 0 or self.window < 2:
            raise ValueError(f"criterion {self.kind}: tau and k must be > 0 and window >= 2")

    def apply(self, y: np.ndarray, forecast: np.ndarray, history: np.ndarray, floor: float) -> Detection:
        """Score and threshold per step. ``history`` holds the residuals of the steps just
        before ``y`` (empty when ``y`` is the start of the series): they seed the rolling sigma."""
        residual = y - forecast
        score = np.maximum(residual, 0.0) if self.kind == "multiplicative_positive" else np.abs(residual)
        if self.kind.startswith("multiplicative"):
            bound = self.tau * np.abs(forecast)
        elif self.kind == "additive":
            bound = self.k * rolling_sigma(residual, history, self.window)
        else:
            sigma = np.std(history) if len(history) > 1 else np.std(residual)
            bound = np.full(len(y), self.k * float(sigma))
        return Detection(score, np.maximum(bound, floor))


def rolling_sigma(residual: np.ndarray, history: np.ndarray, window: int) -> np.ndarray:
    """Per step, the std of the ``window`` residuals before it; ``history`` precedes ``residual``.

    Only earlier steps are read. A step with fewer than two earlier residuals gets 0 (the
    sigma floor then applies).
    """
    series = np.concatenate([history[-window:], residual])
    sigma = pd.Series(series).rolling(window, min_periods=2).std(ddof=0).shift(1).to_numpy()
    return np.nan_to_num(sigma[len(series) - len(residual) :], nan=0.0)
