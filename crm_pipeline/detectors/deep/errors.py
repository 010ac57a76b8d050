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

from crm_pipeline.detectors.deep.memory import MemoryBudget, data_device
from crm_pipeline.detectors.deep.models import DeepModel
from crm_pipeline.detectors.deep.training import (
    autocast,
    group_chunk_for,
    group_residuals,
    pad_groups,
    stacked_bytes,
)

#: Ridge added to the training errors' covariance (relative to its mean variance), so a
#: customer with few events or a constant column still has an invertible covariance.
COVARIANCE_RIDGE = 1e-3
#: Windows scored in one pass on a GPU, and on the CPU: 32 windows for each of
#: ``CPU_GROUP_CHUNK`` groups, about what a training step holds (a pass then stays in the cache).
GPU_WINDOWS_PER_PASS, CPU_WINDOWS_PER_PASS = 32_768, 4_096


@torch.no_grad()
def event_errors(
    model: DeepModel,
    windows: Sequence[np.ndarray],
    n_events: Sequence[int],
    device: torch.device,
    windows_per_pass: int | None = None,
    mixed_precision: bool = False,
    group_chunk: int | None = None,
    budget: MemoryBudget | None = None,
) -> list[np.ndarray]:
    """Per group, the error vector of each event (n_events, F); NaN for events no residual
    covers (the forecaster's first ``lookback`` events).

    A pass holds ``windows_per_pass`` windows (default: ``CPU_WINDOWS_PER_PASS`` on the CPU,
    ``GPU_WINDOWS_PER_PASS`` on a GPU). Groups given largest first (as training
    orders them) are scored without their padding, and ``group_chunk`` groups at a time
    (default: ``group_chunk_for``, as in training):
    each pass over a range of window positions runs only the groups of the chunk that still
    have windows there (a prefix), so a few long customers do not make every group score
    their length. Within a ``budget`` a pass holds no more than it allows, and the windows stay
    in host memory when they do not fit on the device."""
    model.to(device).eval()
    groups = len(windows)
    per_pass = windows_per_pass or (CPU_WINDOWS_PER_PASS if device.type == "cpu" else GPU_WINDOWS_PER_PASS)
    if budget is not None:
        per_pass = budget.windows_per_pass(groups, per_pass)
    on = data_device(budget, device, stacked_bytes(windows), groups, per_pass)
    stack, counts = pad_groups(windows, on)
    _, longest, span, n_features = stack.shape
    rows = model.residuals(stack[:, :1].to(device)).shape[2]
    largest_first = bool((np.diff(counts) <= 0).all())
    chunk = group_chunk_for(device, groups, group_chunk) if largest_first else groups
    squared = np.zeros((groups, longest, rows, n_features), dtype=np.float32)
    for low in range(0, groups, chunk):
        high = min(groups, low + chunk)
        parameters = {name: p[low:high] for name, p in model.named_parameters()}
        start = 0
        while start < counts[low:high].max():
            active = int((counts[low:high] > start).sum()) if largest_first else high - low
            stop = start + max(1, per_pass // active)
            with autocast(device, mixed_precision):
                residuals = group_residuals(
                    model, parameters, stack[low : low + active, start:stop].to(device)
                )
            squared[low : low + active, start:stop] = residuals.float().pow(2).cpu().numpy()
            start = stop
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
