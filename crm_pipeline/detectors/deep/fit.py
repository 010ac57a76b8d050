"""Train a deep model for many customers at once and score their events with it.

Two modes. ``per_customer``: every customer gets its own weights, all trained together in one
batched pass (``training.train_groups``), in chunks when the memory budget says so.
``global``: one model over every customer's windows. Either way each customer keeps its own
input scaling and its own reference of training errors, so its scores read alike.
"""

from __future__ import annotations

import logging
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from crm_pipeline.detectors.deep.data import DEEP_COLUMNS, CustomerEvents, RangeScaler, sliding_windows
from crm_pipeline.detectors.deep.errors import ErrorReference, event_errors, severity
from crm_pipeline.detectors.deep.memory import MemoryBudget
from crm_pipeline.detectors.deep.models import MODELS, DeepModel, build_model
from crm_pipeline.detectors.deep.training import EpochProgress, TrainingLog, train_groups

MODES = ("per_customer", "global")
#: Fewest windows a customer needs beyond its look-back to be trained and to get an error reference.
MIN_WINDOWS = 5
DEFAULT_BATCH = {"per_customer": 32, "global": 1024}

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeepSettings:
    """What to train and how; checked on construction so a bad run config fails before work."""

    model: str = "deepant"
    mode: str = "per_customer"
    lookback: int = 10
    epochs: int = 30
    batch_size: int | None = None
    learning_rate: float = 1e-3
    seed: int = 0
    thresholds: tuple[float, ...] = (0.4, 0.6)

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise ValueError(f"unknown deep model {self.model!r}; known: {', '.join(sorted(MODELS))}")
        if self.mode not in MODES:
            raise ValueError(f"unknown training mode {self.mode!r}; known: {', '.join(MODES)}")
        for name in ("lookback", "epochs", "batch_size"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate}")
        if list(self.thresholds) != sorted(self.thresholds) or not all(0 < t <= 1 for t in self.thresholds):
            raise ValueError(f"thresholds must ascend within (0, 1], got {list(self.thresholds)}")

    @property
    def batch(self) -> int:
        return self.batch_size or DEFAULT_BATCH[self.mode]

    def group_seed(self, partition_key: str) -> int:
        """A customer's seed: its weights and its shuffling depend on it and the run seed only."""
        return zlib.crc32(f"{self.seed}:{partition_key}".encode())


@dataclass
class TrainedModel:
    """A trained model with everything scoring needs: per customer, its group, input scaling
    and training-error reference."""

    settings: DeepSettings
    model: DeepModel
    columns: tuple[str, ...]
    customers: list[str]
    groups: dict[str, int]
    scalers: dict[str, RangeScaler]
    references: dict[str, ErrorReference]
    log: TrainingLog
    skipped: dict[str, str] = field(default_factory=dict)
    device: str = "cpu"
    seconds: float = 0.0


def too_short(n_events: int, span: int) -> str | None:
    """Why a customer with ``n_events`` cannot be trained or scored (too few), or None."""
    needed = span + MIN_WINDOWS - 1
    if n_events < needed:
        return f"{n_events} events; at least {needed} needed (look-back window of {span} + {MIN_WINDOWS - 1})"
    return None


def train_deep(
    customers: Sequence[CustomerEvents],
    settings: DeepSettings,
    device: torch.device,
    mixed_precision: bool = False,
    budget: MemoryBudget | None = None,
    progress: Callable[[str], None] | None = None,
    columns: Sequence[str] = DEEP_COLUMNS,
) -> TrainedModel:
    """Train ``settings.model`` on the customers' events (``columns`` of their values);
    customers with too few are skipped (with the reason) and the rest go on.
    Within a GPU memory ``budget`` per-customer training runs in chunks of customers (each
    chunk trained and scored on its own), global training in smaller batches, and windows that
    do not fit on the device stay in host memory."""
    started = time.perf_counter()
    hyper = {"n_features": len(columns), "lookback": settings.lookback}
    span = build_model(settings.model, [0], **hyper).span
    skipped = {c.partition_key: r for c in customers if (r := too_short(len(c), span))}
    usable = [c for c in customers if c.partition_key not in skipped]
    if not usable:
        raise ValueError(f"no customer has enough events to train {settings.model}: {skipped}")
    scalers = {c.partition_key: RangeScaler.fit(c.values) for c in usable}
    scaled = {c.partition_key: scalers[c.partition_key].transform(c.values) for c in usable}
    windows = {k: sliding_windows(v, span) for k, v in scaled.items()}
    say = progress or log.info

    def epoch_report(prefix: str) -> EpochProgress:
        return lambda e, n, loss, rate: say(f"{prefix}epoch {e}/{n} loss {loss:.5f} ({rate:,.0f} windows/s)")

    if settings.mode == "global":
        batch = settings.batch if budget is None else budget.batch_for(settings.batch)
        order = [c.partition_key for c in usable]
        model = build_model(settings.model, [settings.seed], **hyper)
        pooled = np.concatenate([windows[k] for k in order])
        training_log = train_groups(
            model,
            [pooled],
            [settings.seed],
            settings.epochs,
            batch,
            settings.learning_rate,
            device,
            mixed_precision,
            epoch_report(""),
            budget=budget,
        )
        groups = dict.fromkeys(order, 0)
        errors = {
            k: event_errors(model, [windows[k]], [len(scaled[k])], device, budget=budget)[0] for k in order
        }
    else:
        order = sorted(windows, key=lambda k: (-len(windows[k]), k))
        seeds = [settings.group_seed(k) for k in order]
        parts, logs, per_group = [], [], []
        size = len(order) if budget is None else budget.groups_per_step(len(order), settings.batch)
        chunks = [slice(i, min(i + size, len(order))) for i in range(0, len(order), size)]
        for chunk in chunks:
            part = build_model(settings.model, seeds[chunk], **hyper)
            prefix = f"customers {chunk.start + 1}-{chunk.stop} of {len(order)}: " if len(chunks) > 1 else ""
            logs.append(
                train_groups(
                    part,
                    [windows[k] for k in order[chunk]],
                    seeds[chunk],
                    settings.epochs,
                    settings.batch,
                    settings.learning_rate,
                    device,
                    mixed_precision,
                    epoch_report(prefix),
                    budget=budget,
                )
            )
            mine = order[chunk]
            per_group += event_errors(
                part, [windows[k] for k in mine], [len(scaled[k]) for k in mine], device, budget=budget
            )
            parts.append(part.cpu())  # the next chunk gets the device to itself
        model = build_model(settings.model, seeds, **hyper)
        model.load_state_dict(
            {name: torch.cat([p.state_dict()[name].cpu() for p in parts]) for name in model.state_dict()}
        )
        training_log = _merge_logs(logs, [len(windows[k]) for k in order], chunks)
        groups = {k: g for g, k in enumerate(order)}
        errors = dict(zip(order, per_group, strict=True))
    references = {k: ErrorReference.fit(e) for k, e in errors.items()}
    return TrainedModel(
        settings,
        model.cpu(),
        tuple(columns),
        order,
        groups,
        scalers,
        references,
        training_log,
        skipped,
        str(device),
        time.perf_counter() - started,
    )


def _merge_logs(logs: list[TrainingLog], counts: list[int], chunks: list[slice]) -> TrainingLog:
    """One log for chunked training: epoch losses weighted by each chunk's windows."""
    if len(logs) == 1:
        return logs[0]
    weights = np.array([sum(counts[c]) for c in chunks], dtype=float)
    losses = np.array([lg.epoch_losses for lg in logs])
    seconds = sum(lg.seconds for lg in logs)
    merged = TrainingLog(
        epoch_losses=list((losses * weights[:, None]).sum(axis=0) / weights.sum()),
        group_losses=np.concatenate([lg.group_losses for lg in logs]),
        seconds=seconds,
    )
    merged.windows_per_s = float(weights.sum() * len(merged.epoch_losses) / seconds) if seconds else 0.0
    return merged


@dataclass(frozen=True)
class EventScores:
    """One customer's scored events."""

    partition_key: str
    record_ids: np.ndarray
    dates: np.ndarray
    score: np.ndarray
    confidence: np.ndarray
    severity: np.ndarray


def score_events(
    trained: TrainedModel,
    customers: Sequence[CustomerEvents],
    device: torch.device,
    budget: MemoryBudget | None = None,
) -> tuple[list[EventScores], dict[str, str]]:
    """Score every event of ``customers`` with ``trained``; returns the scores and, per
    customer that could not be scored, why (not in the model, too few events)."""
    span = trained.model.span
    unscored: dict[str, str] = {}
    ready = []
    for c in customers:  # too few events is the reason whichever version was asked
        if reason := too_short(len(c), span):
            unscored[c.partition_key] = reason
        elif c.partition_key not in trained.groups:
            unscored[c.partition_key] = (
                trained.skipped.get(c.partition_key) or "not trained in this model version"
            )
        else:
            ready.append(c)
    results = []
    for c in ready:
        scaled = trained.scalers[c.partition_key].transform(c.values)
        errors = customer_errors(
            trained, c.partition_key, sliding_windows(scaled, span), len(scaled), device, budget
        )
        reference = trained.references[c.partition_key]
        score = reference.score(errors)
        covered = np.isfinite(score)
        results.append(
            EventScores(
                c.partition_key,
                c.record_ids[covered],
                c.dates[covered],
                score[covered],
                reference.confidence(errors)[covered],
                severity(score[covered], trained.settings.thresholds),
            )
        )
    return results, unscored


def customer_model(trained: TrainedModel, key: str) -> DeepModel:
    """A one-group copy of the model ``key`` is scored with (its own weights, or the global ones)."""
    group = trained.groups[key]
    single = build_model(trained.settings.model, [0], **trained.model.hyperparameters())
    single.load_state_dict({n: p[group : group + 1] for n, p in trained.model.state_dict().items()})
    return single.eval()


def customer_errors(
    trained: TrainedModel,
    key: str,
    windows: np.ndarray,
    n_events: int,
    device: torch.device,
    budget: MemoryBudget | None = None,
) -> np.ndarray:
    """One customer's event errors through its own group of the model."""
    return event_errors(customer_model(trained, key), [windows], [n_events], device, budget=budget)[0]
