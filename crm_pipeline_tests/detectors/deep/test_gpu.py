"""The deep models on CUDA: same results as the CPU, mixed precision, the memory budget.
Skipped without CUDA; run on a GPU machine (see docs/benchmarks.md for the recorded run)."""

import numpy as np
import pytest
import torch

from crm_pipeline.detectors.deep.device import measure_budget, resolve_device
from crm_pipeline.detectors.deep.fit import DeepSettings, score_events, train_deep
from crm_pipeline_tests.detectors.deep.test_training import events

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
CPU, CUDA = torch.device("cpu"), torch.device("cuda")
CUSTOMERS = [events("odd", 200, 1, spike_at=140), events("steady", 180, 2), events("third", 90, 3)]


@pytest.fixture(autouse=True)
def full_precision_matmuls():
    previous = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = previous


@pytest.mark.parametrize("kind", ["deepant", "lstm_autoencoder"])
def test_cuda_training_equals_cpu_training_within_tolerance(kind):
    settings = DeepSettings(model=kind, epochs=5, seed=3)
    on_cpu = train_deep(CUSTOMERS, settings, CPU)
    on_gpu = train_deep(CUSTOMERS, settings, CUDA)
    assert on_gpu.device == "cuda"
    np.testing.assert_allclose(on_gpu.log.epoch_losses, on_cpu.log.epoch_losses, rtol=1e-3)
    for p, q in zip(on_cpu.model.parameters(), on_gpu.model.parameters(), strict=True):
        torch.testing.assert_close(p, q.cpu(), atol=1e-3, rtol=1e-3)
    cpu_scores, _ = score_events(on_cpu, CUSTOMERS, CPU)
    gpu_scores, _ = score_events(on_gpu, CUSTOMERS, CUDA)
    for a, b in zip(cpu_scores, gpu_scores, strict=True):
        np.testing.assert_allclose(a.score, b.score, atol=2e-3)


@pytest.mark.parametrize("kind", ["deepant", "lstm_autoencoder"])
def test_mixed_precision_still_finds_the_planted_anomaly(kind):
    trained = train_deep(CUSTOMERS, DeepSettings(model=kind, epochs=30), CUDA, mixed_precision=True)
    scored, _ = score_events(trained, CUSTOMERS, CUDA)
    assert scored[0].record_ids[np.argmax(scored[0].score)] == "odd-140"


@pytest.fixture(scope="module")
def many_customers():
    """200 customers, 240k windows: 74 MB of windows, more than the budget below."""
    return [events(f"c{i:03}", 1210, i) for i in range(200)]


@pytest.mark.parametrize("mode", ["per_customer", "global"])
def test_a_memory_budget_is_kept_in_training_and_scoring(mode, many_customers):
    """A 64 MB budget: per-customer models train in chunks, the global one in smaller batches
    with its windows in host memory, and neither training nor scoring takes more than it."""
    settings = DeepSettings(model="lstm_autoencoder", mode=mode, epochs=1)
    budget = measure_budget("lstm_autoencoder", {"n_features": 7}, CUDA, 64 / 1024, mixed_precision=False)
    assert budget is not None and budget.groups_per_step(200, 32) < 200
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    trained = train_deep(many_customers, settings, CUDA, budget=budget)
    score_events(trained, many_customers[:20], CUDA, budget)
    assert torch.cuda.max_memory_allocated() - base <= budget.total
    assert len(trained.customers) == 200 and np.isfinite(trained.log.epoch_losses).all()


def test_auto_picks_cuda_here():
    assert resolve_device("auto") == CUDA and resolve_device("cuda:0") == torch.device("cuda:0")


@pytest.mark.parametrize("kind", ["deepant", "lstm_autoencoder"])
def test_explanations_on_cuda_point_at_the_planted_column_like_the_cpu(kind):
    from crm_pipeline.explain.deep import explain_events

    trained = train_deep(CUSTOMERS, DeepSettings(model=kind, epochs=30), CPU)
    on_cpu = explain_events(trained, CUSTOMERS[0], np.array([140, 60]), CPU)
    on_gpu = explain_events(trained, CUSTOMERS[0], np.array([140, 60]), CUDA)
    magnitude = np.abs(on_gpu.values[0])
    assert np.unravel_index(magnitude.argmax(), magnitude.shape) == (0, 2)  # the event's subtotal
    if kind == "deepant":  # exact attributions: equal within float tolerance
        np.testing.assert_allclose(on_gpu.values, on_cpu.values, rtol=1e-3, atol=1e-4)
