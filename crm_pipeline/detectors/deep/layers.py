"""Grouped layers: one set of weights per group (customer), all groups computed in one pass.

Every parameter has a leading group dimension ``G`` and every input a leading ``G`` too:
``G = 1`` is an ordinary layer (the global model), ``G = customers`` stacks per-customer
models so thousands of tiny trainings become one batched matrix product each. A forward
pass over ``n < G`` groups uses the first ``n`` groups' weights (training orders customers
by size, so the customers still training are always a prefix).
"""

from __future__ import annotations

import math
import warnings

import torch
from torch import nn


def _uniform(
    groups: int, shape: tuple[int, ...], fan_in: int, generators: list[torch.Generator]
) -> nn.Parameter:
    """PyTorch's default init U(-1/sqrt(fan_in), 1/sqrt(fan_in)), drawn per group from its own
    generator so a group's initial weights do not depend on which other groups share the stack."""
    bound = 1.0 / math.sqrt(fan_in)
    values = [torch.empty(shape).uniform_(-bound, bound, generator=generators[g]) for g in range(groups)]
    return nn.Parameter(torch.stack(values))


def first_groups(param: torch.Tensor, n: int) -> torch.Tensor:
    """The first ``n`` groups of a parameter, not sliced when that is all of them: the backward
    of a slice writes a zero-filled gradient of the full parameter (costly on the CPU)."""
    return param if n == param.shape[0] else param[:n]


class GroupedLinear(nn.Module):
    """``y = x W + b`` per group: x is (G, ..., in), y is (G, ..., out)."""

    def __init__(self, groups: int, n_in: int, n_out: int, generators: list[torch.Generator]) -> None:
        super().__init__()
        self.weight = _uniform(groups, (n_in, n_out), n_in, generators)
        self.bias = _uniform(groups, (n_out,), n_in, generators)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        flat = x.reshape(n, -1, x.shape[-1])
        out = torch.baddbmm(first_groups(self.bias, n).unsqueeze(1), flat, first_groups(self.weight, n))
        return out.reshape(*x.shape[:-1], out.shape[-1])


class GroupedConv1d(nn.Module):
    """A 1-D convolution over time (no padding, stride 1): x is (G, B, T, C_in), y is
    (G, B, T - kernel + 1, C_out). Weights are laid out (kernel · C_in, C_out), time-major, so
    ``export_conv1d`` can hand them to ``torch.nn.Conv1d``."""

    def __init__(
        self, groups: int, n_in: int, n_out: int, kernel: int, generators: list[torch.Generator]
    ) -> None:
        super().__init__()
        self.kernel = kernel
        # fan-in kernel · C_in, as torch.nn.Conv1d's
        self.linear = GroupedLinear(groups, kernel * n_in, n_out, generators)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        steps = x.shape[2] - self.kernel + 1
        taps = torch.cat([x[:, :, k : k + steps] for k in range(self.kernel)], dim=-1)
        return self.linear(taps)


def max_pool_time(x: torch.Tensor, size: int) -> torch.Tensor:
    """Max-pooling over time like ``torch.nn.MaxPool1d(size)`` (a trailing remainder is dropped)."""
    g, b, t, c = x.shape
    keep = (t // size) * size
    return x[:, :, :keep].reshape(g, b, t // size, size, c).amax(dim=3)


class GroupedLSTM(nn.Module):
    """A one-layer LSTM per group, batch first: x is (G, B, T, in), returns (outputs, last h).

    Gate order and initialisation follow ``torch.nn.LSTM``. With one group it runs PyTorch's
    fused LSTM kernel (about twice as fast on the CPU); with many it steps through time with
    one batched matrix product per step for all groups.
    """

    def __init__(self, groups: int, n_in: int, hidden: int, generators: list[torch.Generator]) -> None:
        super().__init__()
        self.hidden = hidden
        self.w_ih = _uniform(groups, (n_in, 4 * hidden), hidden, generators)
        self.w_hh = _uniform(groups, (hidden, 4 * hidden), hidden, generators)
        self.bias = _uniform(groups, (4 * hidden,), hidden, generators)

    def forward(self, x: torch.Tensor, steps: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``x`` is (G, B, T, in), or (G, B, in) fed at each of ``steps`` steps (a repeated
        input, as the autoencoder's decoder reads its code: projected once, not ``steps`` times)."""
        if steps is not None:
            if x.shape[0] == 1:
                return self.forward(x.unsqueeze(2).expand(-1, -1, steps, -1).contiguous())
            n, b, _ = x.shape
        else:
            n, b, t, _ = x.shape
            if n == 1:
                return self._fused(x)
        # tanh(g) = 2 sigmoid(2 g) - 1: with the g gate's weights doubled once per pass, one
        # sigmoid over all four gates replaces three sigmoids and a tanh on strided views at
        # every step (10-13 % of a batched epoch on the CPU, same losses). The gates are taken
        # to float32 first (a no-op but under bfloat16 autocast, where 2 sigmoid - 1 near 0
        # would lose what tanh keeps).
        scale = self._gate_scale(x)
        bias = first_groups(self.bias, n).unsqueeze(1) * scale
        w_ih, w_hh = first_groups(self.w_ih, n) * scale, first_groups(self.w_hh, n) * scale
        if steps is not None:
            per_step = [torch.baddbmm(bias, x, w_ih)] * steps
        else:
            gates_in = torch.baddbmm(bias, x.reshape(n, b * t, -1), w_ih)
            # unbind, not indexing per step: the backward of t selects would write t full-size
            # zero tensors (a third of a batched step's time on the CPU)
            per_step = gates_in.reshape(n, b, t, -1).unbind(dim=2)
        h = x.new_zeros(n, b, self.hidden)
        c = x.new_zeros(n, b, self.hidden)
        outputs = []
        for gates_x in per_step:
            i, f, g, o = torch.sigmoid((gates_x + torch.bmm(h, w_hh)).float()).chunk(4, dim=-1)
            c = torch.addcmul(f * c - i, i, g, value=2.0)  # f c + i (2 g - 1)
            h = o * torch.tanh(c)
            outputs.append(h)
        return torch.stack(outputs, dim=2), h

    def _gate_scale(self, like: torch.Tensor) -> torch.Tensor:
        """1 for the input, forget and output gates, 2 for the cell gate (i, f, g, o order)."""
        scale = like.new_ones(4 * self.hidden)
        scale[2 * self.hidden : 3 * self.hidden] = 2.0
        return scale

    def _fused(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One group through PyTorch's fused LSTM kernel (oneDNN on the CPU, cuDNN on a GPU)."""
        b = x.shape[1]
        h0 = x.new_zeros(1, b, self.hidden)
        # cuDNN wants contiguous (4H, in) weights; it copies them into one chunk per call
        # (tiny here), which is what its "not a single contiguous chunk" warning is about.
        weights = [
            self.w_ih[0].T.contiguous(),
            self.w_hh[0].T.contiguous(),
            self.bias[0],
            torch.zeros_like(self.bias[0]),
        ]
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="RNN module weights are not part")
            # "train" also tells cuDNN to keep what backward needs: on whenever gradients
            # flow (SHAP's gradient explainer differentiates a model in eval mode)
            train = self.training or torch.is_grad_enabled()
            out, h, _ = torch.lstm(x[0], (h0, h0), weights, True, 1, 0.0, train, False, True)
        return out.unsqueeze(0), h
