"""What a GPU memory budget allows a deep model: how many customers train together, the batch
of a global model, how many windows a scoring pass holds, and whether the windows themselves
can sit on the GPU (else they stay in host memory and each step's windows are copied over).

The costs come from two probe steps on the device (``device.measure_budget``): the bytes a
training step needs per window (activations, their gradients, the group's gradients), and per
customer (group) its weights, their gradients and Adam's two moments.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

CPU = torch.device("cpu")
MB = 1024**2


@dataclass(frozen=True)
class MemoryBudget:
    """A memory budget in bytes and a model's costs within it."""

    total: int
    per_window: float
    per_group: int

    def groups_per_step(self, groups: int, batch: int) -> int:
        """Most customers trained together with ``batch`` windows each (at least one)."""
        fit = int(self.total // (batch * self.per_window + self.per_group))
        if fit < 1:
            raise ValueError(self._too_small(f"one customer's step of {batch} windows"))
        return min(groups, fit)

    def batch_for(self, batch: int) -> int:
        """The largest batch up to ``batch`` a one-group (global) model's step may hold."""
        fit = int((self.total - self.per_group) // self.per_window)
        if fit < 1:
            raise ValueError(self._too_small("one window's training step"))
        return min(batch, fit)

    def windows_per_pass(self, groups: int, wanted: int) -> int:
        """Windows a scoring pass of ``groups`` customers may hold, up to ``wanted`` (scoring
        keeps no gradients: the training cost per window bounds it from above)."""
        fit = int((self.total - groups * self.per_group) // self.per_window)
        if fit < 1:
            raise ValueError(self._too_small(f"scoring {groups} customer(s)"))
        return min(wanted, fit)

    def _too_small(self, what: str) -> str:
        return (
            f"the GPU memory budget of {self.total / MB:,.2f} MB is too small for {what} "
            f"({self.per_window / 1024:,.1f} KB a window, {self.per_group / 1024:,.1f} KB of weights "
            "and optimizer state a customer): raise gpu_memory_budget_gb or lower the batch size"
        )


def data_device(
    budget: MemoryBudget | None, device: torch.device, data_bytes: int, groups: int, windows: int
) -> torch.device:
    """Where the windows (``data_bytes``) live: on ``device`` when there is no budget or they fit
    beside ``groups`` customers' weights and a step of ``windows``, else on the CPU (each step
    then copies its own windows over)."""
    if budget is None:
        return device
    needed = data_bytes + groups * budget.per_group + windows * budget.per_window
    return device if needed <= budget.total else CPU
