"""Training many customers at once: equal to one-by-one training, deterministic, and able to
put a planted anomaly on top."""

import numpy as np
import pytest
import torch

from crm_pipeline.detectors.deep.data import DEEP_COLUMNS, CustomerEvents, RangeScaler, sliding_windows
from crm_pipeline.detectors.deep.errors import event_errors
from crm_pipeline.detectors.deep.fit import DeepSettings, score_events, train_deep
from crm_pipeline.detectors.deep.memory import MemoryBudget, data_device
from crm_pipeline.detectors.deep.models import build_model
from crm_pipeline.detectors.deep.training import pad_groups, train_groups

CPU = torch.device("cpu")


def events(key: str, n: int, seed: int, spike_at: int | None = None) -> CustomerEvents:
    """A rhythm of interests, a smooth subtotal (column 2) and, at ``spike_at``, 20x the subtotal."""
    rng = np.random.default_rng(seed)
    i = np.arange(n)
    values = np.zeros((n, len(DEEP_COLUMNS)))
    values[:, 0] = values[:, 1] = i % 3 + 1
    values[:, 2] = 1000 + 150 * np.sin(i / 6) + rng.normal(0, 15, n)
    values[:, 3] = 1
    if spike_at is not None:
        values[spike_at, 2] *= 20
    dates = np.datetime64("2018-01-01") + 3 * i
    return CustomerEvents(key, np.array([f"{key}-{j}" for j in i], dtype=object), dates, values, {})


def windows_of(customers, span):
    return [sliding_windows(RangeScaler.fit(c.values).transform(c.values), span) for c in customers]


@pytest.mark.parametrize("group_chunk", [None, 2])
@pytest.mark.parametrize("kind", ["deepant", "lstm_autoencoder"])
def test_batched_training_equals_a_loop_of_single_trainings(kind, group_chunk):
    """All groups in one pass, or two at a time within each step (as the CPU runs thousands)."""
    customers = [events("a", 90, 1), events("b", 60, 2), events("c", 30, 3)]
    seeds = [11, 22, 33]
    span = build_model(kind, [0], n_features=7).span
    windows = windows_of(customers, span)
    together = build_model(kind, seeds, n_features=7)
    log = train_groups(together, windows, seeds, 3, 16, 1e-3, CPU, group_chunk=group_chunk)
    for g, seed in enumerate(seeds):
        alone = build_model(kind, [seed], n_features=7)
        alone_log = train_groups(alone, [windows[g]], [seed], 3, 16, 1e-3, CPU)
        assert alone_log.group_losses[0] == pytest.approx(log.group_losses[g], rel=1e-4)
        for (name, p), q in zip(together.named_parameters(), alone.parameters(), strict=True):
            torch.testing.assert_close(p[g : g + 1].detach(), q.detach(), atol=1e-5, rtol=1e-4, msg=name)


def test_groups_must_come_largest_first():
    model = build_model("deepant", [1, 2], n_features=7)
    small, large = windows_of([events("a", 20, 1), events("b", 40, 2)], model.span)
    with pytest.raises(ValueError, match="largest first"):
        train_groups(model, [small, large], [1, 2], 1, 8, 1e-3, CPU)


def test_training_is_deterministic_under_a_seed_and_the_loss_falls():
    customers = [events("a", 80, 1), events("b", 50, 2)]
    settings = DeepSettings(epochs=15, seed=4)
    first = train_deep(customers, settings, CPU)
    second = train_deep(customers, settings, CPU)
    assert first.log.epoch_losses == second.log.epoch_losses
    for p, q in zip(first.model.parameters(), second.model.parameters(), strict=True):
        assert torch.equal(p, q)
    assert first.log.epoch_losses[-1] < first.log.epoch_losses[0] / 2
    other = train_deep(customers, DeepSettings(epochs=15, seed=5), CPU)
    assert other.log.epoch_losses != first.log.epoch_losses


def test_chunks_under_a_memory_budget_train_and_score_the_same():
    """A budget with room for one customer's step: customers train and are scored one chunk at
    a time, in scoring passes of 20 windows, with the same weights and error references."""
    customers = [events("a", 80, 1), events("b", 50, 2), events("c", 40, 3)]
    settings = DeepSettings(epochs=3, batch_size=16)
    whole = train_deep(customers, settings, CPU)
    budget = MemoryBudget(total=30_000, per_window=1_000, per_group=10_000)
    assert budget.groups_per_step(3, 16) == 1 and budget.windows_per_pass(1, 4096) == 20
    chunked = train_deep(customers, settings, CPU, budget=budget)
    assert whole.customers == chunked.customers == ["a", "b", "c"]
    for p, q in zip(whole.model.parameters(), chunked.model.parameters(), strict=True):
        torch.testing.assert_close(p, q, atol=1e-5, rtol=1e-4)
    for key in whole.customers:
        assert whole.references[key].high == pytest.approx(chunked.references[key].high, rel=1e-4)


def test_a_global_model_within_a_budget_trains_in_the_batches_it_allows():
    customers = [events("a", 80, 1), events("b", 50, 2)]
    budget = MemoryBudget(total=25_000, per_window=1_000, per_group=1_000)
    assert budget.batch_for(1024) == 24
    within = train_deep(customers, DeepSettings(mode="global", epochs=2), CPU, budget=budget)
    plain = train_deep(customers, DeepSettings(mode="global", epochs=2, batch_size=24), CPU)
    assert within.log.epoch_losses == pytest.approx(plain.log.epoch_losses, rel=1e-5)


def test_a_budget_keeps_windows_in_host_memory_when_they_do_not_fit_and_refuses_a_tiny_one():
    cuda = torch.device("cuda")  # a device name only: nothing is allocated
    budget = MemoryBudget(total=10 * 1024**2, per_window=4_096, per_group=100_000)
    assert data_device(budget, cuda, 4 * 1024**2, groups=2, windows=1024) == cuda
    assert data_device(budget, cuda, 8 * 1024**2, groups=2, windows=1024) == CPU
    assert data_device(None, cuda, 10 * 1024**3, groups=2, windows=1024) == cuda
    tiny = MemoryBudget(total=50_000, per_window=4_096, per_group=100_000)
    for ask in (
        lambda: tiny.groups_per_step(10, 32),
        lambda: tiny.batch_for(1024),
        lambda: tiny.windows_per_pass(1, 99),
    ):
        with pytest.raises(ValueError, match=r"budget of 0.05 MB is too small .*raise gpu_memory_budget_gb"):
            ask()


@pytest.mark.parametrize("kind", ["deepant", "lstm_autoencoder"])
@pytest.mark.parametrize("mode", ["per_customer", "global"])
def test_a_planted_anomaly_gets_the_top_score(kind, mode):
    customers = [events("odd", 200, 1, spike_at=140), events("steady", 200, 2)]
    trained = train_deep(customers, DeepSettings(model=kind, mode=mode, epochs=30), CPU)
    scored, unscored = score_events(trained, customers, CPU)
    assert not unscored
    odd = scored[0]
    assert odd.record_ids[np.argmax(odd.score)] == "odd-140"
    assert odd.score.max() == pytest.approx(1.0) and odd.severity.max() == 2
    top = odd.confidence[np.argmax(odd.score)]
    assert top > 0.999 and np.median(odd.confidence) < 0.9
    assert len(odd.score) == (200 - 10 if kind == "deepant" else 200)  # the forecaster's warm-up


def test_too_short_customers_are_skipped_with_the_reason_and_the_rest_train():
    customers = [events("long", 60, 1), events("short", 8, 2)]
    trained = train_deep(customers, DeepSettings(epochs=2), CPU)
    assert trained.customers == ["long"]
    assert trained.skipped == {"short": "8 events; at least 15 needed (look-back window of 11 + 4)"}
    _, unscored = score_events(trained, customers + [events("new", 40, 3)], CPU)
    assert unscored["short"].startswith("8 events") and unscored["new"] == "not trained in this model version"
    with pytest.raises(ValueError, match="no customer has enough events"):
        train_deep([events("short", 8, 2)], DeepSettings(epochs=1), CPU)


def test_scaling_keeps_an_outlier_at_its_size_and_a_constant_column_at_zero():
    values = np.column_stack(
        [np.full(201, 3.0), np.r_[np.linspace(100, 200, 200), 2100.0], np.r_[np.zeros(200), 1]]
    )
    scaled = RangeScaler.fit(values).transform(values)
    assert np.isfinite(scaled).all() and (scaled[:, 0] == 0).all()
    assert scaled[:200, 1].max() == pytest.approx(1, abs=0.02) and scaled[200, 1] > 15  # 20x the range
    assert scaled[:, 2].max() == 1  # flat between the percentiles: the full range


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"model": "cnn"}, "unknown deep model 'cnn'"),
        ({"mode": "both"}, "unknown training mode 'both'"),
        ({"epochs": 0}, "epochs must be at least 1"),
        ({"learning_rate": 0}, "learning_rate must be positive"),
        ({"thresholds": (0.6, 0.4)}, "thresholds must ascend"),
    ],
)
def test_bad_settings_fail_before_any_work(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DeepSettings(**kwargs)


@pytest.mark.parametrize("kind", ["deepant", "lstm_autoencoder"])
@pytest.mark.parametrize("sizes", [(90, 60, 30), (30, 90, 60)], ids=["largest-first", "any-order"])
def test_event_errors_of_a_stack_equal_each_group_alone(kind, sizes):
    """Scored together in small passes, two groups at a time (groups largest first skip their
    padding), every group's event errors are what its own model gives alone."""
    seeds = [11, 22, 33]
    customers = [events(k, n, s) for k, n, s in zip("abc", sizes, seeds, strict=True)]
    span = build_model(kind, [0], n_features=7).span
    windows = windows_of(customers, span)
    stacked = build_model(kind, seeds, n_features=7)
    together = event_errors(stacked, windows, list(sizes), CPU, windows_per_pass=40, group_chunk=2)
    for g, seed in enumerate(seeds):
        [alone] = event_errors(build_model(kind, [seed], n_features=7), [windows[g]], [sizes[g]], CPU)
        np.testing.assert_allclose(together[g], alone, rtol=1e-4, atol=1e-6)
        assert np.isfinite(alone[span:]).all()


def test_one_group_is_read_in_place_and_several_are_padded():
    """A global model's pooled windows (often the largest array of a run) are not copied on the
    CPU, read-only sliding views included; several groups get a zero-padded stack."""
    [pooled] = windows_of([events("a", 60, 1)], 11)
    stack, counts = pad_groups([pooled], CPU)
    assert not pooled.flags.writeable and np.shares_memory(stack.numpy(), pooled)
    torch.testing.assert_close(stack[0], torch.from_numpy(np.array(pooled)))
    two = windows_of([events("a", 60, 1), events("b", 40, 2)], 11)
    stack, counts = pad_groups(two, CPU)
    assert stack.shape == (2, 50, 11, 7) and list(counts) == [50, 30]
    assert not np.shares_memory(stack.numpy(), two[0]) and not stack[1, 30:].any()
