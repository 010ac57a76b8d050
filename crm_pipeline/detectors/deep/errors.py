"""From residuals to per-event anomaly scores in 0..1 with a confidence per event.

A window's residual rows belong to its last events (the forecaster predicts one event, the
autoencoder reconstructs all of them); an event's error vector is the mean square residual
per column over every window row that covers it. Its score is its mean square error scaled
by the customer's training errors (min-max, as the CRM paper scales, clipped to 0..1 for new
events); its confidence is how unusual the whole error vector is under the training errors
(Mahalanobis distance, as a chi-square probability).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy.stats import chi2

from crm_pipeline.detectors.deep.models import DeepModel
from crm_pipeline.detectors.deep.training import autocast, pad_groups

#: Ridge added to the training errors' covariance (relative to its mean variance), so a
#: customer with few events or a constant column still has an invertible covariance.
COVARIANCE_RIDGE = 1e-3


@torch.no_grad()
def event_errors(
    model: DeepModel,
    windows: Sequence[np.ndarray],
    n_events: Sequence[int],
    device: torch.device,
    windows_per_pass: int = 32_768,
    mixed_precision: bool = False,
) -> list[np.ndarray]:
    """Per group, the error vector of each event (n_events, F); NaN for events no residual
    covers (the forecaster's first ``lookback`` events)."""
    model.to(device).eval()
    stack, counts = pad_groups(windows, device)
    groups, longest, span, n_features = stack.shape
    rows = model.residuals(stack[:, :1]).shape[2]
    chunk = max(1, windows_per_pass // groups)
    squares = []
    for start in range(0, longest, chunk):
        with autocast(device, mixed_precision):
            residuals = model.residuals(stack[:, start : start + chunk])
        squares.append(residuals.float().pow(2).cpu())
    squared = torch.cat(squares, dim=1).numpy()  # (G, longest, rows, F)
    result = []
    for g, (count, events) in enumerate(zip(counts, n_events, strict=True)):
        best = np.full((events, n_features), np.inf)
        for r in range(rows):
            first = span - rows + r  # the event of residual row r in window 0
            rows_r = squared[g, :count, r]
            better = rows_r.sum(axis=1) < best[first : first + count].sum(axis=1)
            best[first : first + count][better] = rows_r[better]
        best[np.isinf(best).any(axis=1)] = np.nan
        result.append(best)
    return result


@dataclass(frozen=True)
class ErrorReference:
    """A customer's training errors: the range of their mean squares and their distribution."""

    low: float
    high: float
    mean: np.ndarray
    precision: np.ndarray

    @classmethod
    def fit(cls, errors: np.ndarray) -> ErrorReference:
        errors = errors[np.isfinite(errors).all(axis=1)]
        mse = errors.mean(axis=1)
        centred = errors - errors.mean(axis=0)
        covariance = centred.T @ centred / max(len(errors) - 1, 1)
        ridge = COVARIANCE_RIDGE * max(float(np.trace(covariance)) / len(covariance), 1e-12)
        precision = np.linalg.inv(covariance + ridge * np.eye(len(covariance)))
        return cls(float(mse.min()), float(mse.max()), errors.mean(axis=0), precision)

    def score(self, errors: np.ndarray) -> np.ndarray:
        """Mean square error scaled to 0..1 by the training range (NaN where not covered)."""
        spread = self.high - self.low
        scaled = (errors.mean(axis=1) - self.low) / (spread if spread > 0 else 1.0)
        return np.clip(scaled, 0.0, 1.0)

    def confidence(self, errors: np.ndarray) -> np.ndarray:
        """Probability that a normal event's error vector lies closer to the training mean."""
        centred = np.nan_to_num(errors - self.mean)
        distance = np.einsum("ij,jk,ik->i", centred, self.precision, centred)
        confidence = chi2.cdf(distance, df=len(self.mean))
        return np.where(np.isfinite(errors).all(axis=1), confidence, np.nan)


def severity(score: np.ndarray, thresholds: Sequence[float]) -> np.ndarray:
    """How many of the (ascending) thresholds each score reaches: 0 normal, 1 at the first, …"""
    return (np.nan_to_num(score, nan=-1.0)[:, None] >= np.asarray(thresholds)[None, :]).sum(axis=1)
