"""SHAP values of flagged events, per input column and look-back step.

Step 0 is the event itself, step k the k-th event before it. The forecaster is explained with
DeepExplainer over its standard-layer export (additivity checked, not switched off), the LSTM
autoencoder with GradientExplainer (expected gradients); both against a background of the same
customer's windows that are not being explained.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import shap
import torch

from crm_pipeline.detectors.deep.data import CustomerEvents, sliding_windows
from crm_pipeline.detectors.deep.fit import TrainedModel, customer_model
from crm_pipeline.detectors.deep.models import DeepAnt, LstmAutoencoder
from crm_pipeline.explain.networks import score_network

#: Expected-gradient samples per explained window (GradientExplainer).
GRADIENT_SAMPLES = 200
#: Windows packed side by side into one shap sample (shap explains sample by sample, at a
#: fixed cost of about 15 ms each for DeepExplainer, and 200 small model calls for expected
#: gradients).
PACKED = 64


@dataclass(frozen=True)
class Explanation:
    """SHAP values (events, steps, columns) of one customer's explained events, the step of each
    (events, steps): 0 the event, k the k-th event before it, -k the k-th after (only in the
    first window, which explains the autoencoder's first events), the explained error of each
    event and its expected value over the background."""

    partition_key: str
    record_ids: np.ndarray
    dates: np.ndarray
    values: np.ndarray
    steps: np.ndarray
    outputs: np.ndarray
    expected: float


def _single_output(values: np.ndarray, like: tuple[int, ...]) -> np.ndarray:
    """shap returns one-output attributions with or without a trailing output axis."""
    values = np.asarray(values)
    return values.reshape(like) if values.size == int(np.prod(like)) else values[..., 0]


def _deep_explainer(
    model: DeepAnt, x: torch.Tensor, bg: torch.Tensor, device: torch.device
) -> tuple[np.ndarray, np.ndarray, float]:
    """DeepExplainer on the forecast error, ``PACKED`` windows per shap sample: returns SHAP
    values (n, 1 + lookback, F) with step 0 the event, the errors, and their expectation."""
    copies = min(PACKED, len(x))
    network = score_network(model, copies).to(device)

    def pack(windows: torch.Tensor) -> list[torch.Tensor]:  # (copies·m, span, F) -> m samples
        m = len(windows) // copies
        history = windows[:, :-1].transpose(1, 2).reshape(m, copies * model.n_features, model.lookback)
        return [history.contiguous(), windows[:, -1].reshape(m, copies * model.n_features).contiguous()]

    padded = torch.cat([x, x[: (-len(x)) % copies]]) if len(x) % copies else x
    explainer = shap.DeepExplainer(network, pack(bg.repeat_interleave(copies, dim=0)))
    inputs = pack(padded)
    history, event = explainer.shap_values(inputs, check_additivity=True)
    history = _single_output(history, tuple(inputs[0].shape))
    event = _single_output(event, tuple(inputs[1].shape))
    n, f, steps = len(x), model.n_features, model.lookback
    history = history.reshape(-1, f, steps).transpose(0, 2, 1)[:n]  # (n, lookback, F)
    event = event.reshape(-1, f)[:n]
    single = score_network(model).to(device)
    with torch.no_grad():
        outputs = single(x[:, :-1].transpose(1, 2).contiguous(), x[:, -1].contiguous())[:, 0].cpu().numpy()
    expected = float(np.ravel(explainer.expected_value)[0]) / copies
    return np.concatenate([event[:, None, :], history[:, ::-1]], axis=1), outputs, expected


def _gradient_explainer(
    model: LstmAutoencoder, x: torch.Tensor, bg: torch.Tensor, device: torch.device, seed: int
) -> tuple[np.ndarray, np.ndarray, float]:
    """Expected gradients (GradientExplainer) of the reconstruction error, ``PACKED`` windows
    per shap sample: returns SHAP values (n, span, F) with step 0 the window's last event, the
    errors, and their expectation over the background."""
    copies = min(PACKED, len(x))
    padded = torch.cat([x, x[: (-len(x)) % copies]]) if len(x) % copies else x
    packed = padded.reshape(-1, copies, *x.shape[1:])
    explainer = shap.GradientExplainer(
        score_network(model, copies).to(device), bg.unsqueeze(1).expand(-1, copies, -1, -1).contiguous()
    )
    raw = explainer.shap_values(packed, nsamples=GRADIENT_SAMPLES, rseed=seed)
    values = _single_output(raw, tuple(packed.shape)).reshape(-1, *x.shape[1:])[: len(x)]
    single = score_network(model).to(device)
    with torch.no_grad():
        outputs, expected = single(x)[:, 0].cpu().numpy(), float(single(bg).mean())
    return values[:, ::-1], outputs, expected


def explain_events(
    trained: TrainedModel,
    events: CustomerEvents,
    positions: np.ndarray,
    device: torch.device,
    background: int = 50,
    seed: int = 0,
) -> Explanation:
    """Explain the events at ``positions`` (indices into ``events``) of one customer: each by
    the window that ends at it, or for the autoencoder's first events (no window ends there) by
    the customer's first window, which reconstructs them too."""
    model = customer_model(trained, events.partition_key).to(device)
    scaled = trained.scalers[events.partition_key].transform(events.values)
    windows = sliding_windows(scaled, model.span)
    first = model.span - 1  # the event that ends window 0
    positions = np.asarray(positions)
    if isinstance(model, DeepAnt) and (positions < first).any():
        raise ValueError(
            f"{events.partition_key}: the forecaster does not score events before position {first}"
        )
    chosen = np.maximum(positions - first, 0)
    steps = np.arange(model.span)[None, :] - np.maximum(first - positions, 0)[:, None]
    rest = np.setdiff1d(np.arange(len(windows)), chosen)
    rng = np.random.default_rng(seed)
    base = rng.choice(rest, size=min(background, len(rest)), replace=False) if len(rest) else chosen
    x = torch.from_numpy(np.ascontiguousarray(windows[chosen])).to(device)
    bg = torch.from_numpy(np.ascontiguousarray(windows[base])).to(device)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*unrecognized nn.Module.*")
        if isinstance(model, DeepAnt):
            values, outputs, expected = _deep_explainer(model, x, bg, device)
        else:
            values, outputs, expected = _gradient_explainer(model, x, bg, device, seed)
    return Explanation(
        events.partition_key, events.record_ids[positions], events.dates[positions],
        np.ascontiguousarray(values, dtype=np.float64), steps, outputs, expected,
    )  # fmt: skip
