"""Plots of the deep models for the asset metadata: the training loss per epoch."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from crm_pipeline.patterns.plots import figure_png, plt


def loss_curve_png(losses: Mapping[str, Sequence[float]]) -> bytes:
    """Mean training loss per epoch, one line per model (log scale: early epochs dwarf late ones)."""
    fig, ax = plt.subplots(figsize=(7, 3.5))
    for label, values in losses.items():
        ax.plot(range(1, len(values) + 1), values, marker="o", ms=3, lw=1, label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel("mean squared error (scaled data)")
    ax.set_yscale("log")
    ax.set_title("training loss")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return figure_png(fig)
