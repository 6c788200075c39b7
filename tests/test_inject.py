"""attrib_core.inject: the in-model slowdown changes no output or gradient, adds work in
proportion to the factor, and is applied (and recorded) by run.prepare."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from attrib_core import inject
from attrib_core.run import RunConfig, prepare

pytestmark = [pytest.mark.filterwarnings("ignore::UserWarning"), pytest.mark.usefixtures("one_thread")]


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 3)).eval()


def _output_and_grad(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    leaf = x.clone().requires_grad_(True)
    out = model(leaf)
    (grad,) = torch.autograd.grad(out[:, 1].sum(), leaf)
    return out.detach(), grad


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2", {"*": 2.0}),
        ("IntegratedGradients=1.1", {"IntegratedGradients": 1.1}),
        ("IntegratedGradients=1.1, Saliency=3", {"IntegratedGradients": 1.1, "Saliency": 3.0}),
        ("", {}),
    ],
)
def test_parse(text, expected):
    assert inject.parse(text) == expected


@pytest.mark.parametrize("text", ["0.5", "fast", "IntegratedGradients=", "Saliency=nan"])
def test_parse_refuses_bad_factors(text):
    with pytest.raises(ValueError, match=inject.ENV_VAR):
        inject.parse(text)


def test_factor_for_method_and_every_cell():
    env = {inject.ENV_VAR: "IntegratedGradients=1.25"}
    assert inject.factor_for("IntegratedGradients", env) == 1.25
    assert inject.factor_for("Saliency", env) == 1.0
    assert inject.factor_for("Saliency", {inject.ENV_VAR: "2"}) == 2.0
    assert inject.factor_for("Saliency", {}) == 1.0


def test_same_outputs_and_gradients():
    model = _model()
    x = torch.randn(8, 64)
    out, grad = _output_and_grad(model, x)
    slow_out, slow_grad = _output_and_grad(inject.SlowedModel(model, 3.0), x)
    torch.testing.assert_close(slow_out, out, rtol=0, atol=0)
    torch.testing.assert_close(slow_grad, grad, rtol=0, atol=0)


def test_extra_work_scales_with_the_factor():
    """Counted in units of work done, forward and backward: none at 1, more at 4 than at 1.5."""
    model, x = _model(), torch.randn(256, 64)
    done = {}
    for factor in (1.0, 1.5, 4.0):
        inject.WorkCounter.units = 0
        wrapped = inject.SlowedModel(model, factor)
        for _ in range(5):
            _output_and_grad(wrapped, x)
        done[factor] = inject.WorkCounter.units
    assert done[1.0] == 0
    assert 0 < done[1.5] < done[4.0]


def test_backward_adds_work():
    model, x = _model(), torch.randn(256, 64)
    wrapped = inject.SlowedModel(model, 2.0)
    inject.WorkCounter.passes = 0
    with torch.no_grad():
        wrapped(x)
    assert inject.WorkCounter.passes == 1  # the forward owes extra time
    inject.WorkCounter.passes = inject.WorkCounter.units = 0
    _output_and_grad(wrapped, x)
    assert inject.WorkCounter.passes == 2  # the forward, and the backward
    assert inject.WorkCounter.units > 0


def test_debt_carries_the_overshoot():
    """Work is paid in whole products; what one pass overpays, the next pass owes less."""
    debt = inject._Debt()
    debt.add_and_pay(1e-4, torch.device("cpu"))
    assert debt.owed_s <= 0  # paid (possibly over)
    overpaid = -debt.owed_s
    inject.WorkCounter.calls = 0
    debt.add_and_pay(overpaid / 2, torch.device("cpu"))
    assert inject.WorkCounter.calls == 0  # covered by the overpayment: no work


def test_prepare_wraps_and_records_only_the_named_method(monkeypatch, digits):
    config = RunConfig("Saliency", "digits_cnn", batch_size=2)
    plain = prepare(config)()
    monkeypatch.setenv(inject.ENV_VAR, "Saliency=1.5")
    slowed = prepare(config)
    assert slowed.injected_model_slowdown == 1.5
    assert isinstance(slowed.model, inject.SlowedModel)
    torch.testing.assert_close(slowed().attributions, plain.attributions, rtol=0, atol=0)
    other = prepare(RunConfig("InputXGradient", "digits_cnn", batch_size=2))
    assert other.injected_model_slowdown == 1.0
    assert not isinstance(other.model, inject.SlowedModel)


def test_layer_method_gets_backward_work_and_same_attributions(monkeypatch, digits):
    """LayerGradCam's backward stops at a layer: the input mark never runs, the output mark adds the work."""
    config = RunConfig("LayerGradCam", "digits_cnn", batch_size=2)
    plain = prepare(config)()
    monkeypatch.setenv(inject.ENV_VAR, "2")
    slowed = prepare(config)
    inject.WorkCounter.units = 0
    result = slowed()
    assert inject.WorkCounter.units > 0
    torch.testing.assert_close(result.attributions, plain.attributions, rtol=0, atol=0)


def test_method_slowdown_pays_factor_minus_one_of_each_call_and_keeps_results(monkeypatch, digits):
    """The method-level injection pays (factor - 1) x each call's own time in work (debt carried)."""
    config = RunConfig("IntegratedGradients", "digits_cnn", batch_size=2, knobs={"n_steps": 4})
    plain = prepare(config)()
    monkeypatch.setenv(inject.METHOD_ENV_VAR, "IntegratedGradients=3")
    slowed = prepare(config)
    assert slowed.injected_method_slowdown == 3.0 and slowed.injected_model_slowdown == 1.0
    inject.WorkCounter.passes, inject.WorkCounter.paid_s = 0, 0.0
    result = slowed()
    assert inject.WorkCounter.passes == 1  # one call owed once
    assert inject.WorkCounter.paid_s > 0
    torch.testing.assert_close(result.attributions, plain.attributions, rtol=0, atol=0)
    assert prepare(RunConfig("Saliency", "digits_cnn", batch_size=2)).injected_method_slowdown == 1.0


def test_method_slowdown_refuses_a_bad_factor(monkeypatch, digits):
    monkeypatch.setenv(inject.METHOD_ENV_VAR, "IntegratedGradients=0.5")
    with pytest.raises(ValueError, match=inject.METHOD_ENV_VAR):
        prepare(RunConfig("IntegratedGradients", "digits_cnn", batch_size=2))
