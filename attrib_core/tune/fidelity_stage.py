"""The fidelity stage: the setting with the fewest predicted passes that meets the target."""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from attrib_core.sweep import cell_key
from attrib_core.tune.records import Candidate, Pruned, knob_text, quality_text
from attrib_core.tune.request import TARGET_KINDS

if TYPE_CHECKING:
    from attrib_core.tune.search import Search

FIDELITY_BUDGET_SHARE = 0.5  # the fidelity stage stops at half the time budget, leaving the rest to the speed axes
EXTRAPOLATION_MARGIN = 4.0  # cut a chain only when its extrapolated cost is this many times the best found
MIN_CHAIN_POINTS = 3  # settings of a chain measured before its convergence rate is trusted


def same_setting(search: Search, a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Equal fidelity knobs (batching knobs aside)."""
    batching = set(search.spec.batching_knobs)
    return {k: v for k, v in a.items() if k not in batching} == {k: v for k, v in b.items() if k not in batching}


def fidelity_stage(search: Search, default: Candidate) -> Candidate:
    """The setting with the fewest predicted passes that meets the target (chains walked cheap to dear)."""
    per_unit = search.seconds_per_unit(default)
    best = None
    if default.meets_target:  # over the budget, the default's setting counts with a chunk that fits
        fitting = default if search.fits(default) else search.fitting_batching(default.config.knobs)
        best = search.run_first(fitting) if fitting is not None else None
    met = [c for c in search.tried if c.meets_target and search.fits(c)]  # e.g. check_reachable's probe
    if best is None and met:
        best = min(met, key=lambda c: search.units(c.config))
    chains: dict[tuple, list[dict[str, Any]]] = {}
    for knobs in sorted(search.space.fidelity_settings, key=lambda k: search.units(search._config(k))):
        chains.setdefault(search.space.chain_key(knobs), []).append(knobs)
    for chain in chains.values():
        history: list[tuple[float, float]] = []  # (cost units, error) measured along the chain
        for knobs in chain:
            if best is not None and same_setting(search, knobs, best.config.knobs):
                continue  # the default's own setting, already measured
            needed = (
                units_needed(history, search.bound)
                if TARGET_KINDS[search.request.target.kind].lower_is_better
                else None
            )
            if best is not None and needed is not None and needed > EXTRAPOLATION_MARGIN * search.units(best.config):
                search.pruned.append(
                    Pruned(
                        cell_key(search._config(knobs)),
                        f"its chain converges too slowly: the error's power law through the chain's settings so "
                        f"far reaches the target at ~{needed:.0f} cost units, the best so far costs "
                        f"{search.units(best.config):.0f} (this setting and the chain's dearer ones not run)",
                    )
                )
                break
            predicted_s = search.units(search._config(knobs)) * per_unit
            if best is not None and search.units(search._config(knobs)) >= search.units(best.config):
                search.pruned.append(
                    Pruned(
                        cell_key(search._config(knobs)),
                        "predicted slower than the best setting already meeting the target "
                        f"({predicted_s:.3g} s by the cost model)",
                    )
                )
                break  # the rest of this chain costs more still
            if search.out_of_time(predicted_s, FIDELITY_BUDGET_SHARE, "fidelity stage"):
                break
            cand = search.fitting_batching(knobs)
            if cand is None:
                continue
            cand = search.run_first(cand)
            search.log(f"    fidelity {knob_text(knobs)}: {quality_text(cand)}")
            if cand.quality is not None:
                history.append((search.units(cand.config), cand.quality.rel_error))
            if cand.meets_target:
                best = cand if best is None or search.units(cand.config) < search.units(best.config) else best
                break  # the chain's dearer settings cannot be faster
    assert best is not None  # the default meets a "default" target; check_reachable vouched for others
    search.release_outputs(keep=best)
    return best


def units_needed(history: Sequence[tuple[float, float]], bound: float) -> float | None:
    """Cost at which a chain's error reaches `bound`, extrapolating error ~ cost^-p from its first to its
    last point (three at least: a rate read off the two cheapest settings alone misjudges Gauss-Legendre,
    which stalls at a few steps and then falls); None while the error does not fall steadily (on a ReLU
    network's kinked path it can jump around), so only a chain converging steadily but too slowly is cut."""
    if len(history) < MIN_CHAIN_POINTS or bound <= 0:
        return None
    errors = [e for _, e in history]
    if any(later >= earlier for earlier, later in itertools.pairwise(errors)):
        return None
    (u1, e1), (u2, e2) = history[0], history[-1]
    if not (u2 > u1 and 0 < e2 < e1) or e2 <= bound:
        return None
    rate = math.log(e1 / e2) / math.log(u2 / u1)
    return u2 * (e2 / bound) ** (1 / rate)
