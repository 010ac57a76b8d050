"""The one detector interface: scikit-learn style, one anomaly score per time step.

A detector takes its parameters in ``__init__``, learns from a customer's series in
``fit`` and returns, for every time step of a series, a score and the threshold above which
that score is anomalous (``detect``). Higher scores are more anomalous; a flag is
``score > threshold``. Thresholds may vary per step (a rolling sigma, a forecast interval).
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Self

import numpy as np


class DetectorError(RuntimeError):
    """A detector could not fit or score one series (recorded per customer, the run goes on)."""


@dataclass(frozen=True)
class SeriesFrame:
    """One customer's lag dataset for one measure, after warm-up: days, target, features.

    ``X`` holds the lag features of each day (never the day's own value ``y``), so a
    forecaster predicts ``y`` from the past only.
    """

    days: np.ndarray
    y: np.ndarray
    X: np.ndarray
    feature_names: tuple[str, ...]

    def __post_init__(self) -> None:
        if not (len(self.days) == len(self.y) == len(self.X)):
            raise ValueError("days, y and X must have one entry per time step")
        if not (np.isfinite(self.y).all() and np.isfinite(self.X).all()):
            raise DetectorError("the series holds NaN or infinite values")

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, rows: slice) -> SeriesFrame:
        return SeriesFrame(self.days[rows], self.y[rows], self.X[rows], self.feature_names)

    def points(self, features: Sequence[str] | None = None) -> np.ndarray:
        """The day's value beside ``features`` (all when None): what the clustering detectors see."""
        if features is None:
            return np.column_stack([self.y, self.X])
        missing = [f for f in features if f not in self.feature_names]
        if missing:
            raise ValueError(
                f"unknown feature(s) {', '.join(missing)}; known: {', '.join(self.feature_names)}"
            )
        columns = [self.feature_names.index(f) for f in features]
        return np.column_stack([self.y, self.X[:, columns]])


@dataclass(frozen=True)
class Detection:
    """Per time step: the anomaly score and the threshold it is compared with."""

    score: np.ndarray
    threshold: np.ndarray

    @property
    def flag(self) -> np.ndarray:
        return self.score > self.threshold


class Detector(ABC):
    """Base of every detector. Subclasses set ``name`` and implement ``fit`` and ``detect``."""

    name: ClassVar[str]
    #: "forecasting" (predicts each day, Table 2 of Soro et al.) or "unsupervised" (Table 3).
    family: ClassVar[str] = "unsupervised"
    #: The fewest time steps ``fit`` accepts; shorter series raise ``DetectorError``.
    min_points: ClassVar[int] = 30

    @abstractmethod
    def fit(self, data: SeriesFrame) -> Self:
        """Learn what normal looks like for this series."""

    @abstractmethod
    def detect(self, data: SeriesFrame) -> Detection:
        """Score every time step of ``data`` (the fitted series or its continuation)."""

    def score(self, data: SeriesFrame) -> np.ndarray:
        """One anomaly score per time step (higher is more anomalous)."""
        return self.detect(data).score

    @property
    def label(self) -> str:
        """How results are named in ``anomaly_scores``: the name, plus the variant if any."""
        return self.name

    @property
    def version(self) -> str:
        """A short, stable fingerprint of the detector and its parameters."""
        text = f"{type(self).__module__}.{type(self).__name__}{sorted(self.get_params().items())}"
        return hashlib.sha1(text.encode()).hexdigest()[:10]

    def get_params(self) -> dict[str, object]:
        """The constructor parameters, as scikit-learn estimators report them."""
        return {k: v for k, v in vars(self).items() if not k.endswith("_")}

    def _check_length(self, data: SeriesFrame) -> None:
        if len(data) < self.min_points:
            raise DetectorError(
                f"{self.name}: {len(data)} time steps after warm-up, at least {self.min_points} needed"
            )

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({params})"


def scale_floor(y: np.ndarray, share: float) -> float:
    """The sigma floor: ``share`` of the series' typical size, so that a flat or nearly flat
    series does not flag every wobble (and never a zero threshold)."""
    typical = max(float(np.mean(np.abs(y))), float(np.std(y)))
    return max(share * typical, 1e-9)
