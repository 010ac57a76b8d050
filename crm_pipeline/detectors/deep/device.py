"""Which device trains the deep models, and what a model costs within a GPU memory budget."""

from __future__ import annotations

import torch

from crm_pipeline.detectors.deep.memory import MemoryBudget
from crm_pipeline.detectors.deep.models import build_model
from crm_pipeline.detectors.deep.training import autocast

PROBE_WINDOWS = 1024
#: Headroom over the measured memory of a probe step (allocator fragmentation, optimizer state).
SAFETY = 1.5


class DeviceUnavailableError(RuntimeError):
    """CUDA was asked for and is not there (and falling back to the CPU was not allowed)."""


def resolve_device(requested: str = "auto", fallback_to_cpu: bool = False) -> torch.device:
    """``auto``: CUDA when present, else the CPU. ``cuda`` / ``cuda:N``: that GPU, or an error
    naming what is missing, unless ``fallback_to_cpu``. ``cpu``: the CPU."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(requested)
    except RuntimeError as exc:
        raise ValueError(f"unknown compute device {requested!r}: use auto, cpu, cuda or cuda:N") from exc
    if device.type == "cpu":
        return device
    if device.type != "cuda":
        raise ValueError(f"unsupported compute device {requested!r}: use auto, cpu, cuda or cuda:N")
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if device.index is not None and device.index < count or device.index is None and count:
        return device
    if fallback_to_cpu:
        return torch.device("cpu")
    have = f"{count} CUDA device(s)" if count else "no CUDA device (or a CPU-only torch build)"
    raise DeviceUnavailableError(
        f"compute device {requested!r} was requested, but this machine has {have}; "
        "use device 'auto' or 'cpu', or set fallback_to_cpu"
    )


def measure_budget(
    kind: str, hyperparameters: dict[str, int], device: torch.device, budget_gb: float, mixed_precision: bool
) -> MemoryBudget | None:
    """``budget_gb`` with the costs of model ``kind`` on ``device``: per window, the larger of two
    probe steps, one group (the fused kernels, cuDNN's workspace included) and two groups (the
    batched path); None on the CPU, where no budget applies."""
    if device.type != "cuda":
        return None
    per_window, weights = 1.0, 0
    for groups in (1, 2):
        probe = build_model(kind, list(range(groups)), **hyperparameters).to(device)
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        windows = torch.rand(groups, PROBE_WINDOWS // groups, probe.span, probe.n_features, device=device)
        with autocast(device, mixed_precision):
            loss = probe.residuals(windows).float().pow(2).mean()
        loss.backward()
        torch.cuda.synchronize(device)
        per_window = max(
            per_window, SAFETY * (torch.cuda.max_memory_allocated(device) - before) / PROBE_WINDOWS
        )
        weights = sum(p.numel() * p.element_size() for p in probe.parameters()) // groups
        del probe, windows, loss
    # per group: its weights, their gradients and Adam's two moments
    return MemoryBudget(int(budget_gb * 1024**3), per_window, int(SAFETY * 4 * weights))
