"""Training many per-customer models in one batched pass (or one global model).

Each group (customer) walks through its own windows in its own shuffled order, ``batch_size``
windows a step, for ``epochs`` epochs, exactly as if it were trained alone: groups are ordered
by size, so at every step the groups that still have windows are a prefix of the stack, and
``GroupAdam`` steps only those. The result equals a loop of separate trainings (tested) at
the cost of one batched step per step of the largest customer.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from crm_pipeline.detectors.deep.memory import MemoryBudget, data_device
from crm_pipeline.detectors.deep.models import DeepModel

#: Called after every epoch with (epoch, epochs, mean loss, windows per second).
EpochProgress = Callable[[int, int, float, float], None]
PERMUTATION_SEED_OFFSET = 1_000_003
#: On the CPU a step runs through the active groups this many at a time, so that a step's
#: tensors stay in the cache.
CPU_GROUP_CHUNK = 128


def group_chunk_for(device: torch.device, groups: int, requested: int | None = None) -> int:
    """Groups computed together: ``requested``, else ``CPU_GROUP_CHUNK`` on the CPU and all of
    them on a GPU, where one large product beats several small ones."""
    return requested or (CPU_GROUP_CHUNK if device.type == "cpu" else groups)


class _Residuals(nn.Module):
    """``model.residuals`` as a module's forward, so ``functional_call`` can run it on a chunk
    of groups with that chunk's parameter slices."""

    def __init__(self, model: DeepModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        return self.model.residuals(windows)


def group_residuals(
    model: DeepModel, parameters: dict[str, torch.Tensor], windows: torch.Tensor
) -> torch.Tensor:
    """``model.residuals(windows)`` computed with ``parameters`` (each a slice of groups of the
    model's parameter of that name) in place of the model's own."""
    renamed = {f"model.{name}": p for name, p in parameters.items()}
    return torch.func.functional_call(_Residuals(model), renamed, (windows,))


def chunk_gradients(
    model: DeepModel,
    windows: torch.Tensor,
    weight: torch.Tensor,
    chunk: int,
    device: torch.device,
    mixed_precision: bool = False,
) -> torch.Tensor:
    """Set every parameter's gradient for the first ``len(windows)`` groups of the loss (sum over
    groups of the weighted mean square residual), ``chunk`` groups at a time, and return each
    window's mean square residual (groups x windows).

    Each chunk runs on detached slices of the parameters (``functional_call``), so its backward
    writes that chunk's gradients only, not a zero-filled gradient of every group."""
    named = list(model.named_parameters())
    active = len(windows)
    for _, p in named:
        p.grad = torch.zeros_like(p) if active < p.shape[0] else torch.empty_like(p)
    per_window = []
    for start in range(0, active, chunk):
        stop = min(active, start + chunk)
        leaves = {name: p[start:stop].detach().requires_grad_() for name, p in named}
        with autocast(device, mixed_precision):
            residuals = group_residuals(model, leaves, windows[start:stop])
        squares = residuals.float().pow(2).mean(dim=(2, 3)) * weight[start:stop]
        loss = (squares.sum(dim=1) / weight[start:stop].sum(dim=1)).sum()
        for (_, p), grad in zip(named, torch.autograd.grad(loss, list(leaves.values())), strict=True):
            p.grad[start:stop] = grad
        per_window.append(squares.detach())
    return torch.cat(per_window)


class GroupAdam:
    """Adam (as ``torch.optim.Adam`` with default betas) with a step count per group, updating
    only the first ``active`` groups of every parameter at each step."""

    def __init__(self, params: Sequence[torch.nn.Parameter], lr: float, betas=(0.9, 0.999), eps=1e-8) -> None:
        self.params = list(params)
        self.lr, (self.beta1, self.beta2), self.eps = lr, betas, eps
        groups = self.params[0].shape[0]
        self.steps = torch.zeros(groups, dtype=torch.float64, device=self.params[0].device)
        self.exp_avg = [torch.zeros_like(p) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in self.params]

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self, active: int) -> None:
        self.steps[:active] += 1
        t = self.steps[:active]
        step_size = (self.lr / (1 - self.beta1**t)).float()
        correction2_sqrt = torch.sqrt(1 - self.beta2**t).float()
        for p, m, v in zip(self.params, self.exp_avg, self.exp_avg_sq, strict=True):
            if p.grad is None:
                continue
            grad = p.grad[:active]
            shape = (active,) + (1,) * (p.dim() - 1)
            m[:active].lerp_(grad, 1 - self.beta1)
            v[:active].mul_(self.beta2).addcmul_(grad, grad, value=1 - self.beta2)
            denom = (v[:active].sqrt() / correction2_sqrt.view(shape)).add_(self.eps)
            p[:active].addcdiv_(m[:active] * step_size.view(shape), denom, value=-1.0)


def pad_groups(windows: Sequence[np.ndarray], device: torch.device) -> tuple[torch.Tensor, np.ndarray]:
    """Stack per-group windows (n_g, span, F) into one zero-padded tensor (G, max n, span, F).

    One group (a global model) needs no padding: on the CPU its windows are used in place, not
    copied (the pooled windows are the largest array of a global training). The tensor is only
    read, so a read-only view (``sliding_windows``) is fine."""
    counts = np.array([len(w) for w in windows])
    if len(windows) == 1 and windows[0].dtype == np.float32:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            return torch.from_numpy(windows[0]).unsqueeze(0).to(device), counts
    span, n_features = windows[0].shape[1:]
    stacked = np.zeros((len(windows), int(counts.max()), span, n_features), dtype=np.float32)
    for g, w in enumerate(windows):
        stacked[g, : len(w)] = w
    return torch.from_numpy(stacked).to(device), counts


def stacked_bytes(windows: Sequence[np.ndarray]) -> int:
    """Bytes of ``pad_groups``'s stack of these windows (float32)."""
    span, n_features = windows[0].shape[1:]
    return 4 * len(windows) * max(len(w) for w in windows) * span * n_features


@dataclass
class TrainingLog:
    """Mean loss per epoch over all windows, each group's last-epoch loss, and throughput."""

    epoch_losses: list[float] = field(default_factory=list)
    group_losses: np.ndarray = field(default_factory=lambda: np.empty(0))
    seconds: float = 0.0
    windows_per_s: float = 0.0


def autocast(device: torch.device, mixed_precision: bool):
    """bfloat16 autocast on CUDA when asked (the matrix products halve their memory traffic);
    the CPU always trains in float32."""
    enabled = mixed_precision and device.type == "cuda"
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled)


def train_groups(
    model: DeepModel,
    windows: Sequence[np.ndarray],
    group_seeds: Sequence[int],
    epochs: int,
    batch_size: int,
    learning_rate: float,
    device: torch.device,
    mixed_precision: bool = False,
    progress: EpochProgress | None = None,
    group_chunk: int | None = None,
    budget: MemoryBudget | None = None,
) -> TrainingLog:
    """Train ``model`` (one group per entry of ``windows``, largest first) on its windows,
    ``group_chunk`` groups at a time within a step (default: ``group_chunk_for``). The windows
    stay in host memory when ``budget`` has no room for them on the device."""
    counts = np.array([len(w) for w in windows])
    if len(windows) != model.groups or len(group_seeds) != model.groups:
        raise ValueError(f"{model.groups} groups in the model, {len(windows)} window sets given")
    if (counts < 1).any() or (np.diff(counts) > 0).any():
        raise ValueError("every group needs windows, and groups must come largest first")
    model.to(device).train()
    data_bytes = stacked_bytes(windows)
    on = data_device(budget, device, data_bytes, model.groups, model.groups * batch_size)
    stack, _ = pad_groups(windows, on)
    steps = -(-counts // batch_size)  # ceil: steps per epoch of each group
    active_at = torch.as_tensor([(steps > s).sum() for s in range(int(steps.max()))])
    generators = [torch.Generator().manual_seed(int(s) + PERMUTATION_SEED_OFFSET) for s in group_seeds]
    optimizer = GroupAdam(list(model.parameters()), learning_rate)
    rows = torch.arange(model.groups, device=on).unsqueeze(1)
    chunk = group_chunk_for(device, model.groups, group_chunk)
    log = TrainingLog()
    started = time.perf_counter()
    for epoch in range(1, epochs + 1):
        order = torch.zeros(model.groups, int(counts.max()), dtype=torch.long)
        for g, n in enumerate(counts):
            order[g, :n] = torch.randperm(int(n), generator=generators[g])
        order = order.to(on)
        valid = (
            torch.arange(int(counts.max()), device=device) < torch.as_tensor(counts, device=device)[:, None]
        )
        loss_sums = torch.zeros(model.groups, device=device, dtype=torch.float64)
        for s, active in enumerate(active_at.tolist()):
            cols = slice(s * batch_size, (s + 1) * batch_size)
            index, weight = order[:active, cols], valid[:active, cols].float()
            windows_now = stack[rows[:active], index].to(device, non_blocking=True)
            per_window = chunk_gradients(model, windows_now, weight, chunk, device, mixed_precision)
            optimizer.step(active)
            loss_sums[:active] += per_window.sum(dim=1).double()
        group_losses = loss_sums.cpu().numpy() / counts
        mean_loss = float(loss_sums.sum().item() / counts.sum())
        log.epoch_losses.append(mean_loss)
        log.group_losses = group_losses
        elapsed = time.perf_counter() - started
        log.seconds, log.windows_per_s = elapsed, float(counts.sum() * epoch / elapsed)
        if progress:
            progress(epoch, epochs, mean_loss, log.windows_per_s)
    model.eval()
    return log
