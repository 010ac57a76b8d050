"""The deep models and their grouped layers on tiny tensors: shapes, gradients, equivalences."""

import pytest
import torch

from crm_pipeline.detectors.deep.layers import GroupedConv1d, GroupedLSTM, max_pool_time
from crm_pipeline.detectors.deep.models import MODELS, build_model
from crm_pipeline.detectors.deep.training import GroupAdam

SEEDS = [5, 6, 7]


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_residual_shapes_and_gradients_reach_every_parameter(kind):
    model = build_model(kind, SEEDS, n_features=7, lookback=10)
    windows = torch.rand(3, 4, model.span, 7)
    residuals = model.residuals(windows)
    rows = 1 if kind == "deepant" else 10
    assert residuals.shape == (3, 4, rows, 7)
    residuals.pow(2).mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_a_group_in_a_stack_computes_what_it_computes_alone(kind):
    stacked = build_model(kind, SEEDS, n_features=7)
    windows = torch.rand(3, 5, stacked.span, 7)
    together = stacked.residuals(windows)
    for g, seed in enumerate(SEEDS):
        alone = build_model(kind, [seed], n_features=7).residuals(windows[g : g + 1])
        torch.testing.assert_close(alone, together[g : g + 1], atol=1e-5, rtol=1e-4)
    # fewer groups in the input: the first groups' weights
    torch.testing.assert_close(stacked.residuals(windows[:2]), together[:2], atol=1e-5, rtol=1e-4)


def test_grouped_layers_match_torch_conv_pool_and_lstm():
    gen = [torch.Generator().manual_seed(1)]
    conv = GroupedConv1d(1, 7, 32, 2, gen)
    reference = torch.nn.Conv1d(7, 32, 2)
    with torch.no_grad():  # ours: (kernel * C_in, C_out), time-major taps
        reference.weight.copy_(conv.linear.weight[0].reshape(2, 7, 32).permute(2, 1, 0))
        reference.bias.copy_(conv.linear.bias[0])
    x = torch.rand(4, 10, 7)
    ours = conv(x.unsqueeze(0))[0]
    torch.testing.assert_close(ours, reference(x.transpose(1, 2)).transpose(1, 2), atol=1e-5, rtol=1e-5)
    pooled = max_pool_time(ours.unsqueeze(0), 2)[0]
    torch.testing.assert_close(pooled, torch.nn.MaxPool1d(2)(ours.transpose(1, 2)).transpose(1, 2))

    lstm = GroupedLSTM(2, 7, 16, [torch.Generator().manual_seed(s) for s in (1, 2)])
    xs = torch.rand(2, 3, 10, 7)
    out_grouped, h_grouped = lstm(xs)  # the step-by-step path (two groups)
    reference = torch.nn.LSTM(7, 16, batch_first=True)
    with torch.no_grad():
        reference.weight_ih_l0.copy_(lstm.w_ih[1].T)
        reference.weight_hh_l0.copy_(lstm.w_hh[1].T)
        reference.bias_ih_l0.copy_(lstm.bias[1])
        reference.bias_hh_l0.zero_()
    out_ref, (h_ref, _) = reference(xs[1])
    torch.testing.assert_close(out_grouped[1], out_ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(h_grouped[1], h_ref[0], atol=1e-5, rtol=1e-5)


def test_group_adam_is_torch_adam_per_group():
    torch.manual_seed(0)
    ours = torch.nn.Parameter(torch.randn(2, 5, 3))
    theirs = [torch.nn.Parameter(ours.detach()[g].clone()) for g in range(2)]
    optimizer = GroupAdam([ours], lr=0.01)
    references = [torch.optim.Adam([p], lr=0.01) for p in theirs]
    for step in range(12):
        active = 2 if step < 8 else 1  # group 1 stops after 8 steps, group 0 goes on
        x = torch.randn(5, 3)
        (ours[:active] * x).sin().sum().backward()
        optimizer.step(active)
        optimizer.zero_grad()
        for g in range(active):
            (theirs[g] * x).sin().sum().backward()
            references[g].step()
            references[g].zero_grad()
    for g in range(2):
        torch.testing.assert_close(ours[g].detach(), theirs[g].detach(), atol=1e-6, rtol=1e-6)


def test_bad_architecture_parameters_are_refused():
    with pytest.raises(ValueError, match="unknown deep model 'cnn'"):
        build_model("cnn", [0], n_features=7)
    with pytest.raises(ValueError, match="lookback 4 is too short"):
        build_model("deepant", [0], n_features=7, lookback=4)
