"""The deep models as the networks SHAP explains: one customer's weights in standard torch
layers, with the anomaly score itself as the single output.

shap's DeepExplainer knows torch's own modules (Conv1d, ReLU, MaxPool1d, Linear, Flatten), not
our grouped layers, so the forecaster is exported to those. Its explained output is the event's
mean absolute forecast error, built from modules DeepLIFT has rules for (|d| = ReLU(d) + ReLU(-d)),
so the attributions add up exactly to the score minus its expected value. The LSTM autoencoder
has no DeepExplainer rules; its mean squared reconstruction error is explained with expected
gradients (GradientExplainer) through the model as it is.
"""

from __future__ import annotations

import torch
from torch import nn

from crm_pipeline.detectors.deep.models import DeepAnt, DeepModel, LstmAutoencoder


def export_conv1d(layer, copies: int = 1) -> nn.Conv1d:  # noqa: ANN001 - a GroupedConv1d
    """Group 0 of a grouped convolution as ``nn.Conv1d`` (weights (kernel · C_in, C_out),
    time-major), applied to ``copies`` windows side by side (channel groups, same weights)."""
    weight, bias = layer.linear.weight[0], layer.linear.bias[0]
    n_out = weight.shape[1]
    n_in = weight.shape[0] // layer.kernel
    conv = nn.Conv1d(copies * n_in, copies * n_out, layer.kernel, groups=copies)
    with torch.no_grad():
        conv.weight.copy_(weight.reshape(layer.kernel, n_in, n_out).permute(2, 1, 0).repeat(copies, 1, 1))
        conv.bias.copy_(bias.repeat(copies))
    return conv


def export_deepant(model: DeepAnt, copies: int = 1) -> nn.Sequential:
    """Group 0 of ``model`` as standard layers taking channels-first history: ``copies``
    windows side by side, (B, copies · F, lookback) -> (B, copies · F) forecasts."""
    steps = ((model.lookback - model.kernel + 1) // 2 - model.kernel + 1) // 2
    # the dense head as a convolution spanning the remaining steps, one channel group per copy
    head = nn.Conv1d(copies * model.filters, copies * model.n_features, steps, groups=copies)
    with torch.no_grad():  # ours flattens (time, channel)
        weight = model.head.weight[0].reshape(steps, model.filters, model.n_features).permute(2, 1, 0)
        head.weight.copy_(weight.repeat(copies, 1, 1))
        head.bias.copy_(model.head.bias[0].repeat(copies))
    return nn.Sequential(
        export_conv1d(model.conv1, copies), nn.ReLU(), nn.MaxPool1d(2),
        export_conv1d(model.conv2, copies), nn.ReLU(), nn.MaxPool1d(2),
        head, nn.Flatten(),
    )  # fmt: skip


class ForecastError(nn.Module):
    """(history (B, copies · F, lookback), events (B, copies · F)) -> the sum over the ``copies``
    windows of each event's mean absolute forecast error (B, 1).

    Packing windows side by side lets one DeepExplainer sample explain ``copies`` windows at
    once (shap explains sample by sample): the windows share no input, so each window's SHAP
    values are exactly its own error's, against the same background window in every slot.
    """

    def __init__(self, model: DeepAnt, copies: int = 1) -> None:
        super().__init__()
        self.copies, self.n_features = copies, model.n_features
        self.forecaster = export_deepant(model, copies)
        self.above, self.below = nn.ReLU(), nn.ReLU()  # one module per use: shap keeps state per module

    def forward(self, history: torch.Tensor, event: torch.Tensor) -> torch.Tensor:
        difference = self.forecaster(history) - event
        return (self.above(difference) + self.below(-difference)).sum(dim=1, keepdim=True) / self.n_features


class ReconstructionError(nn.Module):
    """windows (B, T, F) -> the mean squared reconstruction error of each window (B, 1); with
    ``copies``, windows (B, copies, T, F) -> the sum of the copies' errors (B, 1).

    As for the forecaster, packing lets one GradientExplainer sample explain ``copies``
    windows: the windows share no input, so the gradient at each one is its own error's, and
    its expected gradients are those of one window drawn against the same background windows
    and interpolation points as the first window of the pack.
    """

    def __init__(self, model: LstmAutoencoder, copies: int = 1) -> None:
        super().__init__()
        self.model, self.copies = model, copies

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        flat = windows.reshape(-1, *windows.shape[-2:])
        errors = self.model.residuals(flat.unsqueeze(0))[0].pow(2).mean(dim=(1, 2))
        return errors.reshape(len(windows), -1).sum(dim=1, keepdim=True)


def score_network(model: DeepModel, copies: int = 1) -> nn.Module:
    """The network whose single output is ``model``'s anomaly error, ready for SHAP (``copies``
    windows side by side)."""
    if isinstance(model, DeepAnt):
        return ForecastError(model, copies).eval()
    if isinstance(model, LstmAutoencoder):
        return ReconstructionError(model, copies).eval()
    raise TypeError(f"no SHAP network for {type(model).__name__}")
