"""attrib_core.tune (search stages, space, memory, output): input checks before any search, memory
pruning and successive halving on fake measurements, the snippet, and one real run on tabular_mlp."""

from __future__ import annotations

import dataclasses
import math
import types
from collections.abc import Callable
from pathlib import Path

import matplotlib.pyplot as plt
import pytest
import torch

from attrib_core import schema
from attrib_core.analysis.render.tuned import search_points, tune_summaries, tuned_report, tuned_table
from attrib_core.analysis.results import load_results
from attrib_core.methods import KnobError
from attrib_core.registry import UnknownNameError
from attrib_core.run import PreparedRun, RunConfig
from attrib_core.tune import (
    Candidate,
    FidelityTarget,
    Quality,
    Search,
    TargetUnreachable,
    TuneError,
    TuneRequest,
    check_budget,
    check_request,
    final_comparison,
    gain_shares,
    tune,
)
from attrib_core.tune import output as tune_output
from attrib_core.tune.fidelity_stage import fidelity_stage, units_needed
from attrib_core.tune.measurer import Measurer
from attrib_core.tune.memory import MemoryBudgetError, chunk_rows, fit, parse_bytes
from attrib_core.tune.space import batching_values, parse_fixed
from attrib_core.tune.speed_stage import SAME_RESULT_TOLERANCE, race
from tests.numerics import relative_error, rounding_bound

pytestmark = [pytest.mark.filterwarnings("ignore::UserWarning"), pytest.mark.usefixtures("one_thread")]

IG = "IntegratedGradients"


def request(**changes) -> TuneRequest:
    base = TuneRequest("digits_cnn", (IG,), batch_size=2, compile=False, threads=(1,))
    return dataclasses.replace(base, **changes)


class FakeMeasurer(Measurer):
    """Times, errors and peak bytes from formulas instead of running the model; records what ran."""

    def __init__(
        self,
        time_of: Callable[[Candidate], float],
        error_of: Callable[[Candidate], float],
        bytes_of: Callable[[Candidate], int] = lambda c: 1000,
        predict_of: Callable[[Candidate], float] | None = None,
        output_of: Callable[[Candidate], torch.Tensor] | None = None,
    ) -> None:
        super().__init__(reference=None)
        self.time_of, self.error_of, self.bytes_of = time_of, error_of, bytes_of
        self.output_of = output_of
        self.predict_of = predict_of or time_of
        self.predicted: list[Candidate] = []
        self.ran: list[Candidate] = []
        self.timed_calls: dict[tuple, int] = {}

    def first(self, cand: Candidate) -> None:
        if cand.first_call_s is not None:
            return
        self.ran.append(cand)
        cand.first_call_s = self.time_of(cand)
        cand.quality = Quality(self.error_of(cand), 1.0)
        cand.attributions = self.output_of(cand) if self.output_of else None

    def call(self, cand: Candidate):
        self.timed_calls[cand.identity] = self.timed_calls.get(cand.identity, 0) + 1
        return self.time_of(cand), None

    def timed(self, cand: Candidate, calls: int) -> None:
        self.first(cand)
        for _ in range(calls):
            cand.times_s.append(self.call(cand)[0])

    def predict(self, cand: Candidate, chunk: int, budget_s: float) -> float:
        self.predicted.append(cand)
        return self.predict_of(cand)

    def memory(self, cand: Candidate) -> int:
        cand.peak_bytes = self.bytes_of(cand)
        return cand.peak_bytes


def search_with(measurer: FakeMeasurer, **changes) -> Search:
    req = request(**changes)
    space = check_request(req)[req.methods[0]]
    return Search(req, space, measurer, clock=lambda: 0.0, log=lambda _: None)


# --- bad input, before any search ----------------------------------------------------------


def test_budget_smaller_than_one_model_pass_is_refused_with_the_pass_size():
    with pytest.raises(MemoryBudgetError, match=r"smaller than one forward pass of 'digits_cnn' at batch 2 \(\d+ b"):
        check_budget(request(memory_budget_bytes=16))


def test_unknown_method_names_the_known_ones():
    with pytest.raises(UnknownNameError, match=r"unknown method 'IGG'; known: .*IntegratedGradients"):
        check_request(request(methods=("IGG",)))


def test_unknown_knob_names_the_valid_knobs():
    with pytest.raises(KnobError, match=r"unknown knob 'n_stepz' for IntegratedGradients; valid knobs: n_steps, meth"):
        check_request(request(fixed={"n_stepz": 4}))


def test_bad_knob_value_and_unavailable_precision_are_refused():
    with pytest.raises(KnobError, match="n_steps=0 is not valid"):
        check_request(request(fixed={"n_steps": 0}))
    with pytest.raises(TuneError, match="precision 'fp16' is not available on cpu; valid: fp32, bf16"):
        check_request(request(precisions=("fp16",)))
    with pytest.raises(TuneError, match="memory format 'channels_last' is not valid for 'tabular_mlp'"):
        check_request(request(workload="tabular_mlp", memory_formats=("channels_last",)))


def test_unreachable_target_is_refused_naming_the_best_setting_reached():
    # error falls with steps but never below 0.01; the target asks for 1e-6
    measurer = FakeMeasurer(lambda c: 1.0, lambda c: 0.01 + 1.0 / c.config.knobs["n_steps"])
    search = search_with(measurer, target=FidelityTarget("max_error", 1e-6))
    with pytest.raises(TargetUnreachable, match=r"best reached: rel_error=0\.0256[0-9]* with .*n_steps=64"):
        search.run()
    # only the default and the dearest setting of its chain ran: no search
    assert [c.config.knobs["n_steps"] for c in measurer.ran] == [50, 64]


def test_parsers_name_what_they_accept():
    assert parse_bytes("2GiB") == 2 * 2**30
    assert parse_bytes("1.5 MB") == 1_500_000
    with pytest.raises(MemoryBudgetError, match="use a positive number with one of: B, kB"):
        parse_bytes("lots")
    assert parse_fixed(["sliding_window_shapes=3x15x15", "n_steps=16", "internal_batch_size=None"]) == {
        "sliding_window_shapes": (3, 15, 15),
        "n_steps": 16,
        "internal_batch_size": None,
    }
    with pytest.raises(KnobError, match="expected NAME=VALUE"):
        parse_fixed(["n_steps"])


# --- the memory model ----------------------------------------------------------------------


def test_memory_line_through_two_probes_predicts_exactly_for_a_linear_method():
    model = fit([(2, 8, 1000 + 2 * 300 + 8 * 10), (8, 8, 1000 + 8 * 300 + 8 * 10)], held_bytes_per_row=10)
    assert (model.fixed_bytes, model.per_row_bytes) == (1000, 300)
    assert model.predict(chunk=16, total_rows=32) == 1000 + 16 * 300 + 32 * 10


def test_chunk_rows_follow_captums_batching():
    from attrib_core.methods import CostInput, get_method

    spec = get_method(IG)
    cost = CostInput(2, {"n_steps": 16, "method": "gausslegendre", "internal_batch_size": None}, (1, 8, 8), 16, False)
    assert chunk_rows(spec, cost.knobs, cost) == 32  # all 2 x 16 path points in one call
    assert chunk_rows(spec, {**cost.knobs, "internal_batch_size": 8}, cost) == 8
    assert batching_values(spec, cost.knobs, 2, 32) == [None, 16, 8, 4]


def test_configurations_predicted_over_budget_are_never_run():
    per_row, fixed = 1_000_000, 100_000

    def peak(c: Candidate) -> int:
        cost = search.cost_input(c.config)
        return fixed + per_row * chunk_rows(search.spec, c.config.knobs, cost)

    # only 50 steps or more meet the target, so the search must find a chunk of them that fits
    measurer = FakeMeasurer(lambda c: 1.0, lambda c: 0.0 if c.config.knobs["n_steps"] >= 50 else 1.0, peak)
    budget = fixed + per_row * 40  # the default's 2 x 50 rows in one call do not fit; 40-row chunks do
    search = search_with(measurer, memory_budget_bytes=int(budget * 1.2))
    tuning = search.run()
    ran_chunks = [chunk_rows(search.spec, c.config.knobs, search.cost_input(c.config)) for c in measurer.ran]
    # the default itself is the comparison's baseline and always runs; nothing else over budget does
    assert all(chunk * per_row + fixed <= budget * 1.2 for chunk in ran_chunks[1:])
    over = [p for p in tuning.pruned if "memory budget" in p.reason]
    assert over and all(p.predicted_peak_bytes * 1.10 > p.budget_bytes for p in over)
    assert tuning.tuned.config.knobs["internal_batch_size"] is not None


# --- the search on fake timings ------------------------------------------------------------


def test_fidelity_stage_stops_each_chain_at_its_first_setting_meeting_the_target():
    # exact from 16 Gauss-Legendre steps, from 32 trapezoid steps, never with the midpoint rule
    needed = {"gausslegendre": 16, "riemann_trapezoid": 32, "riemann_middle": 10_000}

    def error(c: Candidate) -> float:
        knobs = c.config.knobs
        return 0.0 if knobs["n_steps"] >= needed[knobs["method"]] else 1.0

    measurer = FakeMeasurer(lambda c: 0.01 * c.config.knobs["n_steps"], error)
    search = search_with(measurer)
    search.started = 0.0
    default = search.measure_default()
    best = fidelity_stage(search, default)
    assert (best.config.knobs["n_steps"], best.config.knobs["method"]) == (16, "gausslegendre")
    gl_steps = [c.config.knobs["n_steps"] for c in measurer.ran if c.config.knobs["method"] == "gausslegendre"]
    assert gl_steps == [50, 2, 3, 4, 6, 8, 12, 16]  # the default, then cheap to dear; 24 and up never run
    trapezoid = [c.config.knobs["n_steps"] for c in measurer.ran if c.config.knobs["method"] == "riemann_trapezoid"]
    assert max(trapezoid) < 16  # once 16 steps met the target, settings with as many passes are pruned


def _race_batching(
    times: dict, predicted: dict | None = None, start: int | None = None
) -> tuple[Candidate, FakeMeasurer, Search]:
    """The batching race at batch 1 from internal_batch_size `start`, `times`: internal_batch_size ->
    seconds per call (50 rows); `predicted`: the same, as the model passes predict it (default: exactly `times`)."""
    predict_of = (lambda c: predicted[c.config.knobs["internal_batch_size"]]) if predicted else None
    measurer = FakeMeasurer(
        lambda c: times[c.config.knobs["internal_batch_size"]], lambda c: 0.0, predict_of=predict_of
    )
    search = search_with(measurer, batch_size=1)
    knobs = {**search.space.default_knobs, "internal_batch_size": start}
    current = search.candidate(Candidate(search._config(knobs), 1, phase="fidelity"))
    measurer.timed(current, 1)
    return race(search, "batching", current), measurer, search


def test_successive_halving_keeps_the_fastest_and_gives_losers_fewer_calls():
    winner, measurer, _ = _race_batching({None: 1.0, 25: 0.5, 12: 0.7, 6: 0.9})
    assert winner.config.knobs["internal_batch_size"] == 25
    calls = {key[0].knobs["internal_batch_size"]: n for key, n in measurer.timed_calls.items()}
    assert calls[25] == 3 and calls[12] == 3  # the faster half (by first call) races on to three timed calls...
    assert 6 not in calls and calls[None] == 1  # ...the slower half stops (None had its one call before the race)


def test_batching_walk_stops_where_the_time_turns_upward_and_lists_the_rest_as_pruned():
    # all 50 rows, then 25, 12, 6 rows per call: 12 is 40 % slower than 25, so 6 (slower still) is never run
    winner, measurer, search = _race_batching({None: 1.0, 25: 0.5, 12: 0.7, 6: 0.9})
    assert winner.config.knobs["internal_batch_size"] == 25
    ran = [c.config.knobs["internal_batch_size"] for c in measurer.ran]
    assert 12 in ran and 6 not in ran
    pruned = [p for p in search.pruned if "axis had turned" in p.reason]
    assert len(pruned) == 1 and "internal_batch_size=6" in pruned[0].cell_key


def test_batching_walk_runs_every_value_while_the_time_keeps_falling_or_stays_within_noise():
    winner, measurer, search = _race_batching({None: 1.0, 25: 1.1, 12: 0.8, 6: 0.7})  # 25: +10 %, under the turn
    assert winner.config.knobs["internal_batch_size"] == 6
    assert {25, 12, 6} <= {c.config.knobs["internal_batch_size"] for c in measurer.ran}
    assert not [p for p in search.pruned if "axis had turned" in p.reason]


def test_short_calls_race_whole_calls_without_probing_passes():
    _, measurer, _ = _race_batching({None: 1.0, 25: 0.5, 12: 0.7, 6: 0.9})  # under SCREEN_ABOVE_S
    assert measurer.predicted == []


def test_long_calls_give_a_whole_call_only_to_the_neighbour_the_passes_rank_first():
    # 10 s calls: 25 rows a call predicted fastest; 12 predicted 1.4x slower than 25, so 6 is never probed
    winner, measurer, search = _race_batching({None: 10.0, 25: 5.0, 12: 7.0, 6: 9.0})
    assert winner.config.knobs["internal_batch_size"] == 25
    assert [c.config.knobs["internal_batch_size"] for c in measurer.predicted] == [None, 25, 12]
    assert [c.config.knobs["internal_batch_size"] for c in measurer.ran] == [None, 25]  # whole calls
    assert sum(measurer.timed_calls.values()) == 1  # the current's one call before the race: no halving rounds
    ranked_out = [p for p in search.pruned if "ranked out by its model passes" in p.reason]
    assert len(ranked_out) == 1 and "internal_batch_size=12" in ranked_out[0].cell_key
    assert ranked_out[0].predicted_s == 7.0
    turned = [p for p in search.pruned if "axis had turned" in p.reason]
    assert len(turned) == 1 and "internal_batch_size=6" in turned[0].cell_key


def test_long_calls_keep_the_current_setting_when_the_whole_call_contradicts_the_prediction():
    # the passes rank 25 first (4 s against 10 s) but its whole call takes 12 s: the current one stays
    winner, measurer, _ = _race_batching(
        {None: 10.0, 25: 12.0, 12: 9.0, 6: 9.0}, {None: 10.0, 25: 4.0, 12: 6.0, 6: 8.0}
    )
    assert winner.config.knobs["internal_batch_size"] is None
    assert [c.config.knobs["internal_batch_size"] for c in measurer.ran] == [None, 25]


def test_long_calls_run_nothing_when_no_neighbour_is_predicted_faster():
    winner, measurer, search = _race_batching(
        {None: 10.0, 25: 5.0, 12: 5.0, 6: 5.0}, {None: 10.0, 25: 11.0, 12: 11.0, 6: 11.0}
    )
    assert winner.config.knobs["internal_batch_size"] is None
    assert [c.config.knobs["internal_batch_size"] for c in measurer.ran] == [None]
    assert len([p for p in search.pruned if "ranked out" in p.reason]) == 3


def test_long_calls_charge_the_time_outside_the_passes_to_each_model_call():
    # current: 6 rows a call (9 calls), 10 s a call of which its passes are 7 s, so 1/3 s a model call
    # is spent outside them. Passes alone rank nothing under 7 s; with that charge, 25 rows a call
    # (2 calls) is predicted 8 + 2/3 s, under the current's 10 s, and its whole call wins
    winner, measurer, search = _race_batching(
        {6: 10.0, 25: 8.5, 12: 9.5, None: 9.8}, {6: 7.0, 25: 8.0, 12: 8.2, None: 9.0}, start=6
    )
    assert winner.config.knobs["internal_batch_size"] == 25
    assert winner.predicted_s == pytest.approx(8.0 + 2 * (10.0 - 7.0) / 9)
    one_call = search.candidate(winner.with_("batching", knobs={"internal_batch_size": None}))
    assert one_call.predicted_s == pytest.approx(9.0 + (10.0 - 7.0) / 9)
    assert [c.config.knobs["internal_batch_size"] for c in measurer.ran] == [6, 25]


def test_a_screened_candidate_that_misses_the_fidelity_target_is_dropped_after_its_whole_call():
    # bf16 predicted twice as fast, but its error (0.5) misses the default's bound: fp32 stays
    measurer = FakeMeasurer(
        lambda c: 20.0 if c.config.precision == "fp32" else 10.0,
        lambda c: 0.0 if c.config.precision == "fp32" else 0.5,
    )
    search = search_with(measurer, batch_size=1)
    search.bound = 0.01
    current = search.candidate(Candidate(search._config(search.space.default_knobs), 1, phase="fidelity"))
    measurer.first(current)
    current.meets_target = True
    winner = race(search, "precision", current)
    assert winner is current
    assert [c.config.precision for c in measurer.ran] == ["fp32", "bf16"]


DEFAULT_RELATIVE = FidelityTarget()  # no worse than Captum's default


def _race_same_math(axis: str, moved_by: float, target: FidelityTarget = DEFAULT_RELATIVE) -> tuple[Candidate, Search]:
    """A race on `axis` whose neighbours run twice as fast, read an error 30 % over the bound and whose
    output is the current one's moved by `moved_by` (relative L2): what another fp32 order does."""
    base = torch.linspace(1.0, 2.0, 64, dtype=torch.float64).reshape(1, 64)
    changed = {
        "memory_format": lambda c: c.config.memory_format != "contiguous",
        "precision": lambda c: c.config.precision != "fp32",
    }[axis]
    measurer = FakeMeasurer(
        lambda c: 0.5 if changed(c) else 1.0,
        lambda c: 1.3e-4 if changed(c) else 1e-4,
        output_of=lambda c: base * (1 + moved_by) if changed(c) else base.clone(),
    )
    search = search_with(measurer, batch_size=1, target=target)
    search.bound = 1e-4
    current = search.candidate(Candidate(search._config(search.space.default_knobs), 1, phase="fidelity"))
    measurer.first(current)
    current.meets_target = True
    return race(search, axis, current), search


def test_an_option_that_only_reorders_the_sums_meets_a_default_relative_target_by_giving_the_same_output():
    winner, search = _race_same_math("memory_format", moved_by=5e-5)
    assert winner.config.memory_format == "channels_last" and winner.meets_target
    assert winner.same_result_distance == pytest.approx(5e-5, rel=1e-3)
    assert any("same attribution" in note and "channels_last" in note for note in search.notes)


def test_an_option_whose_output_moves_more_than_fp32_order_can_is_held_to_the_error_bound():
    winner, search = _race_same_math("memory_format", moved_by=1e-2)  # 10x the tolerance: not the same sum
    assert winner.config.memory_format == "contiguous"
    assert not any("same attribution" in note for note in search.notes)


def test_a_bound_the_user_gave_and_a_change_of_precision_are_held_literally():
    winner, _ = _race_same_math("memory_format", moved_by=5e-5, target=FidelityTarget("max_error", 1e-4))
    assert winner.config.memory_format == "contiguous"  # --max-error 1e-4: 1.3e-4 misses it, same sum or not
    winner, _ = _race_same_math("precision", moved_by=5e-5)  # bf16 changes the arithmetic, not only its order
    assert winner.config.precision == "fp32"


def test_same_result_tolerance_separates_fp32_order_from_bf16_on_real_outputs():
    """The constant's reason, measured: channels_last (another fp32 order) stays well under it, bf16 over it."""
    from attrib_core.fidelity.scores import reference_error
    from attrib_core.run import prepare

    def output(**options) -> torch.Tensor:
        knobs = {"n_steps": 16, "method": "gausslegendre"}
        return prepare(RunConfig(IG, "digits_cnn", batch_size=4, knobs=knobs, **options))().attributions

    def distance(a: torch.Tensor, b: torch.Tensor) -> float:
        return float(reference_error(a, b).rel_l2.mean())

    fp32 = output()
    assert distance(output(memory_format="channels_last"), fp32) < SAME_RESULT_TOLERANCE / 10
    assert distance(output(precision="bf16"), fp32) > SAME_RESULT_TOLERANCE


def test_a_path_reference_states_its_own_error_as_its_distance_to_half_the_steps():
    """The reference (cached on disk, so perhaps computed by another process, batching or CPU's
    kernels) and the same integral computed here are both float32 runs of one float64 value: each
    within what float32 rounding explains on this model (tests/numerics.py), and so is the distance
    between 32 and 64 steps, to within the sum of those bounds."""
    from attrib_core.fidelity.scores import reference_error
    from attrib_core.run import prepare
    from attrib_core.tune.final import reference_for

    config = RunConfig(IG, "digits_cnn", batch_size=2, knobs={"n_steps": 50, "method": "gausslegendre"})
    reference = reference_for(config, 64)

    def steps(n: int) -> PreparedRun:
        return prepare(dataclasses.replace(config, knobs={"n_steps": n, "method": "gausslegendre"}))

    exact_fine, fine_bound = rounding_bound(steps(64), torch.float32)
    _, coarse_bound = rounding_bound(steps(32), torch.float32)
    fine, coarse = steps(64)().attributions, steps(32)().attributions
    assert relative_error(reference.attributions, exact_fine) <= fine_bound
    assert relative_error(fine, exact_fine) <= fine_bound
    expected = float(reference_error(coarse, fine).rel_l2.mean())
    moved = 2 * (fine_bound + coarse_bound) * (1 + expected)  # both ends of each distance may move
    assert abs(reference.resolution - expected) <= moved and reference.resolution > 0
    assert "32 steps" in reference.note
    occlusion = reference_for(RunConfig("Occlusion", "digits_cnn", batch_size=2), 64)
    assert occlusion.resolution is None  # no half-steps estimate for a window


@pytest.mark.parametrize("resolution, warned", [(2e-4, True), (6e-5, True), (4e-5, False), (None, False)])
def test_a_bound_finer_than_the_reference_resolves_is_warned_about(resolution, warned):
    measurer = FakeMeasurer(lambda c: 0.01 * c.config.knobs["n_steps"], lambda c: 1e-4)  # the default's error
    req = request()
    search = Search(
        req, check_request(req)[IG], measurer, clock=lambda: 0.0, log=lambda _: None, reference_resolution=resolution
    )
    search.measure_default()
    assert any("of the reference's own error" in note for note in search.notes) is warned


def test_gain_shares_split_the_log_speedup_along_the_path():
    def cand(median: float) -> Candidate:
        return Candidate(RunConfig(IG, "digits_cnn"), 1, times_s=[median])

    shares = gain_shares([("default", cand(8.0)), ("fewer steps", cand(2.0)), ("batching", cand(1.0))])
    assert shares == pytest.approx({"fewer steps": 2 / 3, "batching": 1 / 3})


# --- the snippet -----------------------------------------------------------------------------


def test_snippet_parses_and_names_the_chosen_arguments():
    config = RunConfig(
        IG,
        "resnet18",
        knobs={"n_steps": 16, "method": "riemann_trapezoid", "internal_batch_size": 8},
        precision="bf16",
        memory_format="channels_last",
    )
    text = tune_output.snippet(Candidate(config, threads=2, compiled=True))
    compile(text, "<snippet>", "exec")
    for expected in (
        "n_steps=16",
        "method='riemann_trapezoid'",
        "internal_batch_size=8",
        "torch.bfloat16",
        "channels_last",
        "torch.set_num_threads(2)",
        "torch.compile(model)",
        "IntegratedGradients(forward)",
    ):
        assert expected in text
    layer = tune_output.snippet(Candidate(RunConfig("LayerGradCam", "digits_cnn", knobs={}), 1), "conv2")
    compile(layer, "<snippet>", "exec")
    assert "LayerGradCam(model, model.get_submodule('conv2'))" in layer


# --- one real run: every configuration in a results file that the analysis reads ------------


def test_real_tune_on_tabular_mlp_writes_a_results_file_the_report_reads(tmp_path: Path):
    req = TuneRequest(
        "tabular_mlp", ("Occlusion",), batch_size=4, compile=False, threads=(1,), time_budget_s=30, final_rounds=2
    )
    [(tuning, finals, measurer)] = tune(req, log=lambda _: None)
    data = tune_output.document(req, [(tuning, finals, measurer)], {}, {}, "test", {"wall_s": 1.0})
    path = tmp_path / "tune.json"
    path.write_text(schema.dumps(data))
    df = load_results([path])
    assert len(df) == len(tuning.tried) + len(finals)
    assert df["cell_key"].is_unique
    table = tuned_table(df, tune_summaries(df), search_points(df))
    assert list(table["setting"]) == ["default", "tuned"]
    default, tuned = table.iloc[0], table.iloc[1]
    assert tuned["rel_error"] <= default["rel_error"] * (1 + req.target.tolerance)
    assert default["speedup"] == 1.0 and math.isfinite(tuned["speedup"])
    assert tuned["peak_MiB"] > 0 and math.isfinite(tuned["efficiency"])
    figure, report_table = tuned_report(df)  # what nox -s report adds
    assert figure.figure is not None and report_table.equals(table)
    plt.close(figure.figure)


def test_the_printed_table_marks_an_efficiency_above_the_suspect_line(tmp_path: Path, capsys):
    """A limit measured wrong (here: the default's paired call made 100x shorter than it was) reads far
    above 1; the table prints it as suspect, never as a plain number."""
    from attrib_core.commands.tune import print_answer

    req = TuneRequest("tabular_mlp", ("Saliency",), batch_size=4, compile=False, threads=(1,), time_budget_s=10)
    [(tuning, finals, measurer)] = tune(req, log=lambda _: None)
    data = tune_output.document(req, [(tuning, finals, measurer)], {}, {}, "test", {"wall_s": 1.0})
    for record in data["benchmarks"]:
        paired = (record["extra_info"].get("calibration") or {}).get("paired")
        if paired and not record["extra_info"]["cell_key"].endswith("-search"):
            paired["cell_median_s"] /= 100
    path = tmp_path / "tune.json"
    path.write_text(schema.dumps(data))
    print_answer(path)
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| Saliency")]
    assert rows and all(" suspect" in row for row in rows), rows


def test_a_steadily_converging_chain_is_extrapolated_and_an_erratic_one_is_not():

    # error halves when the cost doubles (first order): from 0.1 at 20 units, 1e-3 needs 2000
    assert units_needed([(5, 0.4), (10, 0.2), (20, 0.1)], 1e-3) == pytest.approx(2000)
    assert units_needed([(5, 0.4), (10, 0.1), (20, 0.2)], 1e-3) is None  # error rose: no extrapolation
    assert units_needed([(10, 0.2), (20, 0.1)], 1e-3) is None  # two points: too few to trust a rate
    assert units_needed([(5, 0.4), (10, 0.2), (20, 1e-4)], 1e-3) is None  # already met


def test_fidelity_stage_cuts_a_chain_that_converges_too_slowly():
    def error(c: Candidate) -> float:
        knobs = c.config.knobs
        if knobs["method"] == "gausslegendre":
            return 1e-4 if knobs["n_steps"] >= 16 else 1.0
        return 1.5 / knobs["n_steps"]  # first order: would need 1500 steps for 1e-3

    measurer = FakeMeasurer(lambda c: 0.01 * c.config.knobs["n_steps"], error)
    search = search_with(measurer, target=FidelityTarget("max_error", 1e-3))
    best = fidelity_stage(search, search.measure_default())
    assert best.config.knobs["n_steps"] == 16
    for rule in ("riemann_trapezoid", "riemann_middle"):
        assert [c.config.knobs["n_steps"] for c in measurer.ran if c.config.knobs["method"] == rule] == [2, 3, 4]
    assert sum("converges too slowly" in p.reason for p in search.pruned) == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--method", "IGG"], "unknown method 'IGG'; known:"),
        (["--method", IG, "--memory-budget", "1kB"], "smaller than one forward pass of 'digits_cnn'"),
        (["--method", IG, "--memory-budget", "lots"], "is not a size"),
        (["--method", IG, "--fix", "n_stepz=3"], "unknown knob 'n_stepz' for IntegratedGradients; valid knobs:"),
        (["--method", IG, "--max-error", "small"], "--max-error 'small' is not valid"),
    ],
)
def test_command_refuses_bad_input_with_one_line_and_exit_2(args, message, capsys, tmp_path):
    from attrib_core.commands.tune import main

    assert main(["--workload", "digits_cnn", "--results-dir", str(tmp_path), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tune: error: ") and message in err and err.count("\n") == 1
    assert not list(tmp_path.iterdir())  # nothing ran, nothing written


def test_a_target_the_default_misses_is_met_by_a_dearer_setting():
    measurer = FakeMeasurer(
        lambda c: 0.01 * c.config.knobs["n_steps"], lambda c: 0.01 if c.config.knobs["n_steps"] >= 64 else 1.0
    )
    tuning = search_with(measurer, target=FidelityTarget("max_error", 0.05)).run()
    assert not tuning.default.meets_target
    assert tuning.tuned.config.knobs["n_steps"] == 64 and tuning.tuned.meets_target


def test_a_compiled_configuration_is_held_against_its_compiled_models_passes(monkeypatch):
    prepared_for: list[bool] = []

    class RecordingMeasurer:
        def prepared(self, cand: Candidate) -> str:
            prepared_for.append(cand.compiled)
            return "compiled run" if cand.compiled else "eager run"

    monkeypatch.setattr(tune_output.measure, "synchronized", lambda run, device: run)
    monkeypatch.setattr(tune_output.limit, "measure_limit", lambda run, call: {"calibrated on": run})
    calibrations = tune_output.Calibrations(RecordingMeasurer())
    eager = Candidate(RunConfig("Occlusion", "shapes_resnet18"), threads=2)
    compiled = dataclasses.replace(eager, compiled=True)
    assert calibrations.get(compiled) == {"calibrated on": "compiled run"}
    assert calibrations.get(eager) == {"calibrated on": "eager run"}  # a separate limit, not the compiled one's
    assert prepared_for == [True, False]


def test_final_comparison_reverses_its_order_every_other_round():
    order: list[int] = []

    class OrderMeasurer(FakeMeasurer):
        def call(self, cand: Candidate):
            order.append(cand.config.knobs["n_steps"])
            return super().call(cand)

    path = [
        (axis, Candidate(RunConfig(IG, "digits_cnn", knobs={"n_steps": steps}), 1, times_s=[1.0]))
        for axis, steps in (("default", 50), ("fewer steps", 16), ("batching", 8))
    ]
    finals = final_comparison(types.SimpleNamespace(path=path), OrderMeasurer(lambda c: 1.0, lambda c: 0.0), 3)
    assert order == [50, 16, 8, 8, 16, 50, 50, 16, 8]
    assert [len(cand.times_s) for _, cand in finals] == [3, 3, 3]


def test_a_probe_that_breaks_leaves_the_candidate_to_a_whole_call_that_records_the_failure():
    def predict_of(cand: Candidate) -> float:
        if cand.config.precision == "bf16":
            raise RuntimeError("no bf16 kernel for this op")
        return 20.0

    measurer = FakeMeasurer(
        lambda c: 20.0 if c.config.precision == "fp32" else 10.0, lambda c: 0.0, predict_of=predict_of
    )
    search = search_with(measurer, batch_size=1)
    current = search.candidate(Candidate(search._config(search.space.default_knobs), 1, phase="fidelity"))
    measurer.first(current)
    current.meets_target = True
    search.bound = 0.01
    winner = race(search, "precision", current)
    assert [c.config.precision for c in measurer.ran] == ["fp32", "bf16"]  # bf16 got its whole call
    assert winner.config.precision == "bf16"


def test_when_the_current_settings_passes_cannot_be_timed_the_axis_races_whole_calls():
    def broken(cand: Candidate) -> float:
        raise RuntimeError("hook refused")

    measurer = FakeMeasurer(
        lambda c: {None: 10.0, 25: 5.0, 12: 7.0, 6: 9.0}[c.config.knobs["internal_batch_size"]],
        lambda c: 0.0,
        predict_of=broken,
    )
    search = search_with(measurer, batch_size=1)
    current = search.candidate(Candidate(search._config(search.space.default_knobs), 1, phase="fidelity"))
    measurer.timed(current, 1)
    winner = race(search, "batching", current)
    assert winner.config.knobs["internal_batch_size"] == 25
    assert {25, 12} <= {c.config.knobs["internal_batch_size"] for c in measurer.ran}  # whole calls, as for short ones
    assert any("model passes could not be timed" in note for note in search.notes)


def test_default_and_tuned_efficiency_come_from_calls_and_passes_timed_alternately(monkeypatch):
    events: list[str] = []

    class CallingMeasurer:
        def prepared(self, cand: Candidate) -> str:
            return "run"

        def call(self, cand: Candidate):
            events.append("call")
            return 3.0, None

    def time_pass(kind: str, batch: int) -> float:
        events.append(f"{kind}@{batch}:{torch.get_num_threads()}t")
        return 0.5

    monkeypatch.setattr(tune_output.measure, "synchronized", lambda run, device: run)
    monkeypatch.setattr(tune_output.limit, "measure_limit", lambda run, call: {"best_batch_size": {"forward": 4}})
    monkeypatch.setattr(tune_output.limit, "pass_timer", lambda run: time_pass)
    monkeypatch.setattr(tune_output.limit, "warm_up", lambda timer, kind, batch, rule: (2, timer(kind, batch)))
    calibrations = tune_output.Calibrations(CallingMeasurer())
    cand = Candidate(RunConfig("Occlusion", "shapes_resnet18"), threads=2)  # the test runs on one thread
    assert "paired" not in calibrations.get(cand)  # path steps: the limit alone
    paired = calibrations.get(cand, paired=True)["paired"]
    assert paired["cell_median_s"] == 3.0 and paired["forward_s_per_sample"] == 0.5 / 4
    assert paired["rounds"] == tune_output.TUNE_PAIRED_ROUNDS == 2
    # a warm-up pass, then the call first in one round and last in the next, the passes on the cell's threads
    assert events == ["forward@4:2t", "call", "forward@4:2t", "forward@4:2t", "call"]
