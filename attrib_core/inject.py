"""A slowdown made inside the model, to prove that regression checks see one.

`ATTRIB_BENCH_INJECT_MODEL_SLOWDOWN` = "2" (every cell) or "IntegratedGradients=1.1" (that
method's cells; comma-separated for several). `run.prepare` wraps the model in `SlowedModel`,
which after each forward does (factor - 1) x that forward's own duration of extra tensor
arithmetic, and the same after each backward through it. The work is real compute, not a
sleep, so it competes for the CPU as a slower model would, and it hits every method in
proportion to its model calls (a harness-side spin-wait would not). Outputs and gradients
are unchanged: the marks are identity autograd Functions.

`ATTRIB_BENCH_INJECT_METHOD_SLOWDOWN` (same syntax) slows the method's whole `attribute`
call instead: after each call, (factor - 1) x that call's duration of the same work, so the
cell takes `factor` times as long. That is what a slower Captum method looks like (its own
code, not the model, got slower), and it is the exact cell-level factor, where a model
slowdown reaches a cell only in proportion to the model's share of its time.

A cell built either way records `injected_model_slowdown` / `injected_method_slowdown`, so it
never passes for a result.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

ENV_VAR = "ATTRIB_BENCH_INJECT_MODEL_SLOWDOWN"
METHOD_ENV_VAR = "ATTRIB_BENCH_INJECT_METHOD_SLOWDOWN"
ALL_METHODS = "*"
WORK_SIDE = 32  # the extra work is a WORK_SIDE x WORK_SIDE matrix product, repeated


class WorkCounter:
    """How much extra work was done (tests count work, not wall time): the `passes` (forward
    or backward) that owed extra time, the `calls` to busy_work that paid it, and the `units`
    (matrix products) done."""

    passes = 0
    calls = 0
    units = 0
    paid_s = 0.0


def parse(text: str | None, variable: str = ENV_VAR) -> dict[str, float]:
    """ "2" -> {"*": 2.0}; "IntegratedGradients=1.1,Saliency=3" -> per method. ValueError names the bad part."""
    factors: dict[str, float] = {}
    for part in (text or "").split(","):
        part = part.strip()
        if not part:
            continue
        method, _, value = part.rpartition("=")
        method = method.strip() or ALL_METHODS
        try:
            factor = float(value)
        except ValueError:
            factor = float("nan")
        if not factor >= 1.0:
            raise ValueError(
                f"{variable}={text!r}: {part!r} is not valid; use FACTOR (every cell) or METHOD=FACTOR, FACTOR >= 1"
            )
        factors[method] = factor
    return factors


def factor_for(method: str, environ: Mapping[str, str] | None = None, variable: str = ENV_VAR) -> float:
    """The slowdown this method's cells get from the environment (1.0: none)."""
    factors = parse((os.environ if environ is None else environ).get(variable), variable)
    return factors.get(method, factors.get(ALL_METHODS, 1.0))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


_WORK: dict[torch.device, torch.Tensor] = {}  # one small matrix per device, made once


def busy_work(seconds: float, device: torch.device) -> float:
    """Matrix products on `device` for about `seconds`; returns the seconds actually spent.

    Stops at the first product that ends past the deadline, so it overshoots by up to one
    product; `_Debt` carries that overshoot into the next call, so the extra time is right on
    average even when each call owes only microseconds."""
    if seconds <= 0:
        return 0.0
    if device not in _WORK:
        _WORK[device] = torch.full((WORK_SIDE, WORK_SIDE), 1.0 / WORK_SIDE, device=device)
    a = _WORK[device]
    started = time.perf_counter()
    deadline = started + seconds
    units = 0
    while True:
        a @ a
        units += 1
        _sync(device)
        now = time.perf_counter()
        if now >= deadline:
            break
    WorkCounter.calls += 1
    WorkCounter.units += units
    WorkCounter.paid_s += now - started
    return now - started


class _Debt:
    """Extra time owed (seconds): added after each pass, paid with work once it is positive."""

    def __init__(self) -> None:
        self.owed_s = 0.0

    def add_and_pay(self, seconds: float, device: torch.device) -> None:
        WorkCounter.passes += 1
        self.owed_s += seconds
        if self.owed_s > 0:
            self.owed_s -= busy_work(self.owed_s, device)


class _State:
    def __init__(self) -> None:
        self.forward_s = 0.0
        self.backward_started = None  # perf_counter when the backward reached the model's output
        self.input_marked = False
        self.debt = _Debt()


class _OutputMark(torch.autograd.Function):
    """Identity; its backward runs first, just before the model's own backward."""

    @staticmethod
    def forward(ctx: Any, out: torch.Tensor, wrapper: SlowedModel) -> torch.Tensor:
        ctx.wrapper = wrapper
        ctx.input_marked = wrapper.state.input_marked
        ctx.forward_s = wrapper.state.forward_s
        return out.view_as(out)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        wrapper = ctx.wrapper
        if ctx.input_marked:  # the input mark times the backward and adds the work
            wrapper.state.backward_started = time.perf_counter()
        else:  # a backward that stops inside the model (a layer): its length is unknown, use the forward's
            wrapper.state.debt.add_and_pay((wrapper.factor - 1) * ctx.forward_s, grad.device)
        return grad, None


class _InputMark(torch.autograd.Function):
    """Identity; its backward runs last, when the model's backward is done."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, wrapper: SlowedModel) -> torch.Tensor:
        ctx.wrapper = wrapper
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        wrapper = ctx.wrapper
        started = wrapper.state.backward_started
        if started is not None:
            _sync(grad.device)
            wrapper.state.debt.add_and_pay((wrapper.factor - 1) * (time.perf_counter() - started), grad.device)
            wrapper.state.backward_started = None
        return grad, None


class SlowedModel(nn.Module):
    """`model`, made `factor` times slower in its forward and backward by extra real work.

    A module, so hooks and module searches (DeepLift's ReLUs, layer hooks) still find the
    wrapped model's submodules.
    """

    def __init__(self, model: nn.Module, factor: float) -> None:
        super().__init__()
        if not factor >= 1.0:
            raise ValueError(f"SlowedModel: factor={factor!r} is not valid; needs a number >= 1")
        self.model = model
        self.factor = float(factor)
        self.state = _State()

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        args = list(args)
        first = args[0] if args else None
        marked = (
            isinstance(first, torch.Tensor)
            and first.is_floating_point()
            and first.requires_grad
            and torch.is_grad_enabled()
        )
        if marked:
            args[0] = _InputMark.apply(first, self)
        device = first.device if isinstance(first, torch.Tensor) else torch.device("cpu")
        _sync(device)
        started = time.perf_counter()
        out = self.model(*args, **kwargs)
        _sync(device)
        self.state.forward_s = time.perf_counter() - started
        self.state.input_marked = marked
        self.state.debt.add_and_pay((self.factor - 1) * self.state.forward_s, device)
        if isinstance(out, torch.Tensor) and out.requires_grad:
            out = _OutputMark.apply(out, self)
        return out


def wrap(model: nn.Module, method: str, environ: Mapping[str, str] | None = None) -> tuple[nn.Module, float]:
    """The model to hand Captum, and the factor applied (the model itself when 1)."""
    factor = factor_for(method, environ)
    return (model, 1.0) if factor == 1.0 else (SlowedModel(model, factor), factor)


def slowed_call(call: Callable[..., Any], factor: float, device: torch.device) -> Callable[..., Any]:
    """`call`, followed each time by (factor - 1) x its own duration of busy_work (debt carried)."""
    debt = _Debt()

    def slow(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        result = call(*args, **kwargs)
        _sync(device)
        debt.add_and_pay((factor - 1) * (time.perf_counter() - started), device)
        return result

    return slow
