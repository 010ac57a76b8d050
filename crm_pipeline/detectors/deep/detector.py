"""The deep models behind the project's detector interface, for a customer's daily series.

``DeepAntDetector`` and ``LstmAutoencoderDetector`` fit one model to one series (the day's
value, plus any lag features named in ``features``) and score every day with the same error
scaling as the CRM-event scores: 0..1 by the series' own training errors, flagged above
``threshold`` (the CRM paper's 0.4 by default). So they run wherever the classical detectors
run: the scoring assets, the backfills and the paper's evaluation protocol.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, Self

import numpy as np

from crm_pipeline.detectors.base import Detection, Detector, DetectorError, SeriesFrame
from crm_pipeline.detectors.deep.data import CustomerEvents, sliding_windows
from crm_pipeline.detectors.deep.device import resolve_device
from crm_pipeline.detectors.deep.fit import DeepSettings, customer_errors, too_short, train_deep

#: The partition key the one series is trained under (a detector sees one series at a time).
SERIES = "series"


class DeepDetector(Detector):
    """One deep model per series, trained on its windows; the score of a day is its scaled
    error (forecast or reconstruction), 0 for the first days no window covers."""

    model: ClassVar[str]
    min_points = 30

    def __init__(
        self,
        lookback: int = 10,
        epochs: int = 30,
        batch_size: int = 32,
        learning_rate: float = 1e-3,
        threshold: float = 0.4,
        features: Sequence[str] = (),
        device: str = "cpu",
        seed: int = 0,
    ) -> None:
        if not 0 < threshold <= 1:
            raise ValueError(f"{self.name}: threshold must be within (0, 1], not {threshold}")
        self.lookback = lookback
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.threshold = threshold
        self.features = tuple(features)
        self.device = device
        self.seed = seed
        # validates the numbers before any work, as the registry promises
        self.settings_ = DeepSettings(
            model=self.model,
            lookback=lookback,
            epochs=epochs,
            batch_size=batch_size,
            learning_rate=learning_rate,
            seed=seed,
            thresholds=(threshold,),
        )

    def fit(self, data: SeriesFrame) -> Self:
        self._check_length(data)
        values = data.points(self.features)
        device = resolve_device(self.device)
        trained = train_deep([_events(data.days, values)], self.settings_, device, columns=self._columns())
        if SERIES in trained.skipped:
            raise DetectorError(f"{self.name}: {trained.skipped[SERIES]}")
        self.trained_ = trained
        self.last_day_ = data.days[-1]
        self.history_ = values[-(trained.model.span - 1) :]
        return self

    def detect(self, data: SeriesFrame) -> Detection:
        """Scores of ``data``: the fitted series, or its continuation (read with the last
        training days as look-back, so its first days are scored too)."""
        values = data.points(self.features)
        history = self.history_ if data.days[0] > self.last_day_ else values[:0]
        both = np.vstack([history, values])
        span = self.trained_.model.span
        if reason := too_short(len(both), span):
            raise DetectorError(f"{self.name}: {reason}")
        scaled = self.trained_.scalers[SERIES].transform(both)
        device = resolve_device(self.device)
        errors = customer_errors(self.trained_, SERIES, sliding_windows(scaled, span), len(scaled), device)
        score = np.nan_to_num(self.trained_.references[SERIES].score(errors), nan=0.0)
        return Detection(score[len(history) :], np.full(len(values), self.threshold))

    def _columns(self) -> tuple[str, ...]:
        return ("y", *self.features)


def _events(days: np.ndarray, values: np.ndarray) -> CustomerEvents:
    return CustomerEvents(SERIES, np.arange(len(days)).astype(str), days, values.astype(np.float64), {})


class DeepAntDetector(DeepDetector):
    """The DeepAnT-style CNN forecaster: a day's error is how far its forecast missed."""

    name = "deepant"
    model = "deepant"


class LstmAutoencoderDetector(DeepDetector):
    """The LSTM autoencoder: a day's error is how badly the windows holding it reconstruct."""

    name = "lstm_autoencoder"
    model = "lstm_autoencoder"
