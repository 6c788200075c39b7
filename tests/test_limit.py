"""The limit: the best-batch search (scripted timers), its stopping and warm-up rules, the
partial-backward passes (gradients checked against torch.autograd.grad), rows per call."""

import itertools
import math
import warnings

import pytest
import torch

from attrib_core import limit
from attrib_core.limit import FORWARD, FORWARD_BACKWARD, FROM_LAYER, TO_LAYER, SearchRule
from attrib_core.methods import METHODS
from attrib_core.run import RunConfig, prepare

QUICK = SearchRule(min_repeats=3, max_repeats=6, min_warmup=2, max_warmup=4)


class ScriptedTimer:
    """time_call(kind, batch) from a table of seconds per call (or an iterator per pair); logs calls."""

    def __init__(self, seconds):
        self.seconds = seconds
        self.calls = []

    def __call__(self, kind, batch):
        self.calls.append((kind, batch))
        value = self.seconds[(kind, batch)]
        return next(value) if hasattr(value, "__next__") else value


# --- candidate batch sizes ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rows", "own", "expected"),
    [
        (1, 1, [1]),
        (8, 8, [1, 2, 4, 8]),
        (200, 1, [1, 2, 4, 8, 16, 32, 64, 128, 200]),  # the rows per call, where the method runs
        (20, 3, [1, 2, 3, 4, 8, 16, 20]),
        (4, 16, [1, 2, 4]),  # never beyond the rows one call sees
    ],
)
def test_candidate_batches_are_powers_of_two_up_to_the_rows_per_call_and_those_rows(rows, own, expected):
    assert limit.candidate_batches(rows, own) == expected


@pytest.mark.parametrize("bad", [0, -3, 2.0, True])
def test_candidate_batches_reject_bad_rows(bad):
    with pytest.raises(ValueError, match=rf"rows_per_call={bad!r}"):
        limit.candidate_batches(bad, 1)


# --- the search -----------------------------------------------------------------------------


def test_search_picks_the_minimum_per_sample_time_and_its_batch():
    # per sample: fb 1.0, 0.6, 0.35, 0.4 ms at batch 1, 2, 4, 8 -> best at 4; forward best at 8
    fb = {1: 1.0e-3, 2: 1.2e-3, 4: 1.4e-3, 8: 3.2e-3}
    fwd = {1: 0.5e-3, 2: 0.8e-3, 4: 1.2e-3, 8: 1.6e-3}
    timer = ScriptedTimer(
        {**{(FORWARD_BACKWARD, b): s for b, s in fb.items()}, **{(FORWARD, b): s for b, s in fwd.items()}}
    )
    out = limit.search_best(timer, [FORWARD, FORWARD_BACKWARD], [1, 2, 4, 8], QUICK)
    assert out["forward_backward_s_per_sample"] == pytest.approx(0.35e-3)
    assert out["forward_s_per_sample"] == pytest.approx(0.2e-3)
    assert out["best_batch_size"] == {FORWARD: 8, FORWARD_BACKWARD: 4}
    assert out["per_batch_s_per_sample"][FORWARD_BACKWARD] == pytest.approx(
        {"1": 1e-3, "2": 0.6e-3, "4": 0.35e-3, "8": 0.4e-3}
    )
    assert out["basis"] == "best batch" and out["stable"]
    assert out["skipped_batches"] == [] and not out["budget_exhausted"]
    assert out["repeats"] == QUICK.min_repeats  # constant timings: stable as soon as allowed
    assert out["spread"] == {FORWARD: 0.0, FORWARD_BACKWARD: 0.0}


def test_rounds_interleave_every_pair_in_a_rotated_order():
    timer = ScriptedTimer({(k, b): 1e-3 * b for k in (FORWARD, FORWARD_BACKWARD) for b in (1, 2)})
    out = limit.search_best(timer, [FORWARD, FORWARD_BACKWARD], [1, 2], QUICK)
    pairs = [(FORWARD, 1), (FORWARD_BACKWARD, 1), (FORWARD, 2), (FORWARD_BACKWARD, 2)]
    rounds = timer.calls[out["warmup_calls"] :]
    assert len(rounds) == 4 * out["repeats"]
    for i in range(out["repeats"]):
        chunk = rounds[4 * i : 4 * i + 4]
        assert sorted(chunk) == sorted(pairs)  # every pair once per round
        assert chunk == pairs[i % 4 :] + pairs[: i % 4]  # order rotated round after round


def test_stopping_rule_stops_when_medians_settle_and_caps_when_they_do_not():
    # after two warm-up calls of 1.0, rounds 1, 3, 1, 3, 2, 2...: medians 1, 2, 1, 2, 2 (round 5 moved 0)
    settling = ScriptedTimer({(FORWARD, 1): itertools.chain([1.0, 1.0], [1.0, 3.0, 1.0, 3.0], itertools.repeat(2.0))})
    rule = SearchRule(min_repeats=3, max_repeats=10, min_warmup=2, max_warmup=2, tolerance=0.03, budget_s=1e9)
    out = limit.search_best(settling, [FORWARD], [1], rule)
    assert out["stable"] and out["repeats"] == 5 and out["forward_s_per_sample"] == 2.0
    # never settles: each round doubles, so the median keeps moving; the cap ends it, recorded
    drifting = ScriptedTimer({(FORWARD, 1): (2.0**i for i in itertools.count())})
    out = limit.search_best(drifting, [FORWARD], [1], rule)
    assert not out["stable"] and out["repeats"] == rule.max_repeats and not out["budget_exhausted"]


def test_warm_up_runs_until_two_calls_agree_and_stays_out_of_the_medians():
    # a cold start (as after a cell that freed gigabytes): 50, 20, 5, then 1.0 ms for good
    timer = ScriptedTimer({(FORWARD, 1): itertools.chain([50e-3, 20e-3, 5e-3], itertools.repeat(1e-3))})
    rule = SearchRule(min_repeats=3, max_repeats=6, min_warmup=2, max_warmup=8)
    out = limit.search_best(timer, [FORWARD], [1], rule)
    assert out["warmup_calls"] == 5  # 50, 20, 5, 1, 1: the last two agree
    assert out["forward_s_per_sample"] == pytest.approx(1e-3) and out["spread"][FORWARD] == 0.0


def test_the_largest_batch_is_timed_however_long_one_call_takes():
    # a slow machine: 3 s a row, so one call of the 8 rows takes 24 s, far past the 10 s budget;
    # batch 8 is where the cell runs, so it is timed all the same, and the limit comes from it
    timer = ScriptedTimer({(FORWARD, b): (3.0 * b if b == 8 else 5.0 * b) for b in (1, 2, 4, 8)})
    out = limit.search_best(timer, [FORWARD], [1, 2, 4, 8], SearchRule(budget_s=10.0, max_warmup=2))
    assert out["batch_sizes"] == [8] and out["skipped_batches"] == [1, 2, 4]
    assert out["forward_s_per_sample"] == pytest.approx(3.0) and out["best_batch_size"] == {FORWARD: 8}
    assert out["budget_exhausted"] and out["repeats"] == 1  # one round, then the budget ends it
    assert {b for _, b in timer.calls} == {8}


def test_required_sizes_are_timed_and_optional_ones_join_in_increasing_order_while_they_fit():
    # 10 ms a row: batch 16 (required: the rows per call) and 1 (required: the cell's own batch)
    # are timed first; 2, 4 and 8 then join while warm-up + min_repeats rounds fit in the budget
    timer = ScriptedTimer({(FORWARD, b): 0.01 * b for b in (1, 2, 4, 8, 16)})
    rule = SearchRule(budget_s=1.2, min_warmup=2, max_warmup=2, min_repeats=3, max_repeats=3)
    out = limit.search_best(timer, [FORWARD], [1, 2, 4, 8, 16], rule, required=[1])
    # spent after the required warm-ups: 2 x (0.16 + 0.01) = 0.34 s; a round costs 0.17 s
    # + size 2: 0.34 + 3 x 0.17 + 5 x 0.02 (at the slowest 10 ms a row seen) = 0.95 <= 1.2: in
    # + size 4: 0.38 + 3 x 0.19 + 5 x 0.04 = 1.15 <= 1.2: in;  + size 8: 0.46 + 0.69 + 0.4 > 1.2: out
    assert out["batch_sizes"] == [1, 2, 4, 16] and out["skipped_batches"] == [8]
    assert [b for _, b in timer.calls[:4]] == [16, 16, 1, 1]  # required sizes first, largest first
    assert out["search_s"] == pytest.approx(sum(0.01 * b for _, b in timer.calls))


@pytest.mark.parametrize("call_s", [0.05, 0.5, 5.0])
def test_the_budget_bounds_the_whole_search(call_s):
    # however long one call is, the search stops within the budget or, where even the required
    # warm-up overruns it, after one round past that warm-up
    timer = ScriptedTimer({(k, b): call_s * b for k in (FORWARD, FORWARD_BACKWARD) for b in (1, 2, 4, 8, 16, 32)})
    rule = SearchRule(budget_s=20.0, min_warmup=2, max_warmup=8, min_repeats=3, max_repeats=12)
    out = limit.search_best(timer, [FORWARD, FORWARD_BACKWARD], [1, 2, 4, 8, 16, 32], rule)
    one_round = sum(call_s * b for b in out["batch_sizes"]) * 2
    required_warm_up = 2 * 2 * call_s * 32
    assert out["search_s"] <= max(rule.budget_s, required_warm_up + one_round) + 1e-9
    assert 32 in out["batch_sizes"] and out["repeats"] >= 1


@pytest.mark.parametrize(
    ("kinds", "sizes", "message"),
    [([], [1], "needs kinds"), (["backward"], [1], "unknown pass kind"), ([FORWARD], [], "needs kinds")],
)
def test_search_rejects_bad_requests(kinds, sizes, message):
    with pytest.raises(ValueError, match=message):
        limit.search_best(ScriptedTimer({}), kinds, sizes, QUICK)


@pytest.mark.parametrize(
    ("field", "bad"),
    [("min_repeats", 0), ("max_warmup", 1.5), ("tolerance", 0.0), ("budget_s", -1.0), ("budget_s", True)],
)
def test_search_rule_rejects_bad_settings(field, bad):
    with pytest.raises(ValueError, match=field):
        SearchRule(**{field: bad})


def test_paired_rounds_alternate_the_cell_and_the_limit_and_take_medians():
    log = []
    cell_times = iter([10.0, 12.0, 11.0, 30.0])  # one slow round (load): the median shrugs it off

    def time_cell():
        log.append("cell")
        return next(cell_times)

    def time_pass(kind, batch):
        log.append((kind, batch))
        return {FORWARD: 2.0, TO_LAYER: 4.0}[kind] * batch

    out = limit.paired_rounds(time_cell, time_pass, {FORWARD: 4, TO_LAYER: 2}, rounds=4)
    one = [(FORWARD, 4), (TO_LAYER, 2)]
    assert log == ["cell", *one, *one, "cell", "cell", *one, *one, "cell"]  # ABBA: cell first, then last
    assert out["cell_median_s"] == 11.5 and out["rounds"] == 4
    assert out["forward_s_per_sample"] == 2.0 and out["forward_backward_to_layer_s_per_sample"] == 4.0
    assert out["best_batch_size"] == {FORWARD: 4, TO_LAYER: 2}
    with pytest.raises(ValueError, match="rounds=0"):
        limit.paired_rounds(time_cell, time_pass, {FORWARD: 1}, rounds=0)


# --- the passes -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gradcam():
    return prepare(RunConfig("LayerGradCam", "digits_cnn", batch_size=4))


def _layer(prepared):
    return prepared.workload_model.get_submodule(prepared.workload.layer_name)


def test_to_layer_pass_differentiates_with_respect_to_the_layer_output(gradcam):
    model, layer, x, target = gradcam.model, _layer(gradcam), gradcam.inputs, gradcam.kwargs["target"]
    (grad,) = limit.pass_call(TO_LAYER, model, x, target, layer)()
    seen = []
    handle = layer.register_forward_hook(lambda _m, _i, out: seen.append(out))
    out = model(x)
    handle.remove()
    (expected,) = torch.autograd.grad(out.gather(1, target[:, None]).sum(), seen[0])
    assert grad.shape == seen[0].shape and torch.allclose(grad, expected)
    assert all(p.grad is None for p in model.parameters())


def test_from_layer_pass_differentiates_the_layer_output_with_respect_to_the_inputs(gradcam):
    model, layer, x = gradcam.model, _layer(gradcam), gradcam.inputs
    (grad,) = limit.pass_call(FROM_LAYER, model, x, None, layer)()
    leaf = x.detach().requires_grad_(True)
    seen = []
    handle = layer.register_forward_hook(lambda _m, _i, out: seen.append(out))
    model(leaf)
    handle.remove()
    (expected,) = torch.autograd.grad(seen[0].sum(), leaf)
    assert grad.shape == x.shape and torch.allclose(grad, expected)


def test_full_pass_differentiates_the_target_logits_with_respect_to_the_inputs(gradcam):
    model, x, target = gradcam.model, gradcam.inputs, gradcam.kwargs["target"]
    (grad,) = limit.pass_call(FORWARD_BACKWARD, model, x, target)()
    leaf = x.detach().requires_grad_(True)
    (expected,) = torch.autograd.grad(model(leaf).gather(1, target[:, None]).sum(), leaf)
    assert torch.allclose(grad, expected)


def test_layer_passes_need_the_layer(gradcam):
    with pytest.raises(ValueError, match="needs the workload's layer"):
        limit.pass_call(TO_LAYER, gradcam.model, gradcam.inputs, None)
    with pytest.raises(ValueError, match="unknown pass kind 'sideways'"):
        limit.pass_call("sideways", gradcam.model, gradcam.inputs, None)


@pytest.mark.parametrize(
    ("method", "knobs", "expected_rows"),
    [
        ("Saliency", {}, 4),
        ("DeepLift", {}, 8),  # inputs and baselines in one call
        ("IntegratedGradients", {"n_steps": 6}, 24),
        ("IntegratedGradients", {"n_steps": 6, "internal_batch_size": 8}, 8),
    ],
)
def test_rows_per_call_reads_how_a_method_groups_its_rows(method, knobs, expected_rows):
    prepared = prepare(RunConfig(method, "digits_cnn", batch_size=4, knobs=knobs))
    with warnings.catch_warnings(), limit.rows_per_call(prepared.workload_model) as rows:
        warnings.simplefilter("ignore")
        prepared()
    assert max(rows) == expected_rows
    assert not prepared.workload_model._forward_hooks  # the hook is gone afterwards


def test_calibrate_limit_measures_each_kind_at_its_best_batch(gradcam):
    rule = SearchRule(min_repeats=2, max_repeats=3, min_warmup=1, max_warmup=2)
    timer = limit.PassTimer(gradcam.model, gradcam.inputs, gradcam.kwargs["target"], "cpu", _layer(gradcam))
    out = limit.calibrate_limit(timer, [FORWARD, TO_LAYER], max_rows=8, rule=rule)
    assert out["batch_sizes"] == [1, 2, 4, 8] and out["rows_per_call"] == 8 and out["batch_size"] == 4
    for kind in (FORWARD, TO_LAYER):
        per_batch = out["per_batch_s_per_sample"][kind]
        assert math.isfinite(out[f"{kind}_s_per_sample"]) and out[f"{kind}_s_per_sample"] == min(per_batch.values())
        assert per_batch[str(out["best_batch_size"][kind])] == out[f"{kind}_s_per_sample"]
    assert all(p.grad is None for p in gradcam.model.parameters())


def test_registry_says_how_far_each_backward_reaches():
    reach = {spec.name: spec.backward_reach for spec in METHODS}
    assert {name for name, r in reach.items() if r == "to_layer"} == {
        "LayerGradCam",
        "LayerIntegratedGradients",
        "LayerConductance",
        "LayerGradientXActivation",
        "InternalInfluence",
        "LayerDeepLift",
        "LayerDeepLiftShap",
        "LayerGradientShap",
        "LLM-LayerIntegratedGradients",  # Captum's LLMGradientAttribution over LayerIntegratedGradients
    }
    assert {name for name, r in reach.items() if r == "from_layer"} == {
        "NeuronGradient",
        "NeuronIntegratedGradients",
        "NeuronDeepLift",
        "NeuronDeepLiftShap",
        "NeuronGradientShap",
        "NeuronGuidedBackprop",
        "NeuronDeconvolution",
    }
    assert set(reach.values()) <= set(limit.KIND_OF_REACH)
