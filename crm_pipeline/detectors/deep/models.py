"""The CRM paper's two deep models, built from grouped layers (one model per group).

* ``DeepAnt``: a DeepAnT-style forecaster. Two 1-D convolutions of 32 filters (kernel 2), each
  followed by ReLU and max-pooling, then a dense head predicting the next event's columns
  from the ``lookback`` events before it.
* ``LstmAutoencoder``: an LSTM encoder compresses the window to its last hidden state, an LSTM
  decoder unrolls it back to the window, a dense layer maps to the columns.

Both take windows (G, B, span, F) and return *residuals* (G, B, rows, F): prediction minus
truth for the rows a model predicts (the last row for the forecaster, every row for the
autoencoder). Training minimises their mean square; scoring turns them into per-event errors.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import nn

from crm_pipeline.detectors.deep.layers import (
    GroupedConv1d,
    GroupedLinear,
    GroupedLSTM,
    max_pool_time,
)


def group_generators(group_seeds: Sequence[int]) -> list[torch.Generator]:
    """One seeded generator per group: a customer's initial weights depend on its seed only."""
    return [torch.Generator().manual_seed(int(seed)) for seed in group_seeds]


class DeepModel(nn.Module):
    """What training and scoring need of a model: its window span and its residuals."""

    kind: ClassVar[str]

    def __init__(self, n_features: int, lookback: int, group_seeds: Sequence[int]) -> None:
        super().__init__()
        if lookback < 2:
            raise ValueError(f"lookback must be at least 2, got {lookback}")
        self.n_features, self.lookback, self.groups = n_features, lookback, len(group_seeds)

    @property
    def span(self) -> int:
        """Events per window."""
        return self.lookback

    def residuals(self, windows: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def hyperparameters(self) -> dict[str, int]:
        """What rebuilds this architecture (saved next to the weights)."""
        return {"n_features": self.n_features, "lookback": self.lookback}


class DeepAnt(DeepModel):
    """DeepAnT-style CNN forecaster of the next event (Munir et al., as in Bastidas et al.)."""

    kind = "deepant"

    def __init__(
        self,
        n_features: int,
        lookback: int = 10,
        group_seeds: Sequence[int] = (0,),
        filters: int = 32,
        kernel: int = 2,
    ) -> None:
        super().__init__(n_features, lookback, group_seeds)
        after_conv1 = (lookback - kernel + 1) // 2
        after_conv2 = (after_conv1 - kernel + 1) // 2
        if after_conv2 < 1:
            raise ValueError(
                f"lookback {lookback} is too short for two conv + pool stages of kernel {kernel}"
            )
        gens = group_generators(group_seeds)
        self.filters, self.kernel = filters, kernel
        self.conv1 = GroupedConv1d(self.groups, n_features, filters, kernel, gens)
        self.conv2 = GroupedConv1d(self.groups, filters, filters, kernel, gens)
        self.head = GroupedLinear(self.groups, after_conv2 * filters, n_features, gens)

    @property
    def span(self) -> int:
        return self.lookback + 1

    def forward(self, history: torch.Tensor) -> torch.Tensor:
        """(G, B, lookback, F) -> the predicted next event (G, B, F)."""
        h = max_pool_time(torch.relu(self.conv1(history)), 2)
        h = max_pool_time(torch.relu(self.conv2(h)), 2)
        return self.head(h.flatten(start_dim=2))

    def residuals(self, windows: torch.Tensor) -> torch.Tensor:
        return (self(windows[:, :, :-1]) - windows[:, :, -1]).unsqueeze(2)

    def hyperparameters(self) -> dict[str, int]:
        return {**super().hyperparameters(), "filters": self.filters, "kernel": self.kernel}


class LstmAutoencoder(DeepModel):
    """LSTM autoencoder reconstructing the window (MSE)."""

    kind = "lstm_autoencoder"

    def __init__(
        self,
        n_features: int,
        lookback: int = 10,
        group_seeds: Sequence[int] = (0,),
        hidden: int = 32,
    ) -> None:
        super().__init__(n_features, lookback, group_seeds)
        gens = group_generators(group_seeds)
        self.hidden = hidden
        self.encoder = GroupedLSTM(self.groups, n_features, hidden, gens)
        self.decoder = GroupedLSTM(self.groups, hidden, hidden, gens)
        self.output = GroupedLinear(self.groups, hidden, n_features, gens)

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        """(G, B, T, F) -> its reconstruction (G, B, T, F)."""
        _, code = self.encoder(windows)
        decoded, _ = self.decoder(code, steps=windows.shape[2])
        return self.output(decoded)

    def residuals(self, windows: torch.Tensor) -> torch.Tensor:
        return self(windows) - windows

    def hyperparameters(self) -> dict[str, int]:
        return {**super().hyperparameters(), "hidden": self.hidden}


MODELS: dict[str, type[DeepModel]] = {cls.kind: cls for cls in (DeepAnt, LstmAutoencoder)}


def build_model(kind: str, group_seeds: Sequence[int], **hyperparameters: int) -> DeepModel:
    """The model ``kind`` with one group per seed; an unknown kind raises ``ValueError``."""
    if kind not in MODELS:
        raise ValueError(f"unknown deep model {kind!r}; known: {', '.join(sorted(MODELS))}")
    return MODELS[kind](group_seeds=group_seeds, **hyperparameters)
