"""attrib_core.noise: the snapshot's keys on this machine, and assess() on synthetic snapshots."""

from __future__ import annotations

import os
import sys
import time

import pytest

from attrib_core import noise


def quiet(**changes) -> dict:
    snapshot = {
        "load_average": [0.2, 0.3, 0.3],
        "cpu_count": 2,
        "cpu_governor": "performance",
        "busy_processes": [{"pid": 10, "name": "sshd", "cpu_percent": 1.0}],
    }
    return {**snapshot, **changes}


def test_context_has_every_field():
    snapshot = noise.context(window_s=0.05)
    assert set(snapshot) == {"time_unix_s", "load_average", "cpu_count", "cpu_governor", "busy_processes", "window_s"}
    assert snapshot["cpu_count"] >= 1 and snapshot["window_s"] == 0.05
    if sys.platform == "linux":
        assert len(snapshot["load_average"]) == 3
    for p in snapshot["busy_processes"]:
        assert set(p) == {"pid", "name", "cpu_percent"} and p["pid"] != os.getpid()


@pytest.mark.skipif(sys.platform != "linux", reason="/proc")
def test_a_busy_child_is_seen():
    child = os.fork()
    if child == 0:  # spin for a second, then leave without cleanup
        end = time.monotonic() + 1.5
        while time.monotonic() < end:
            pass
        os._exit(0)
    try:
        # the parent (this process) is excluded; its child spins and must be among the busiest
        busiest = noise.busiest_processes(window_s=0.3, shown=50)
    finally:
        os.waitpid(child, 0)
    assert child in {p["pid"] for p in busiest}


def test_a_quiet_machine_gets_no_warning():
    assert noise.assess(quiet(), quiet(load_average=[1.1, 0.5, 0.3])) == []  # our own run: load 1 on 2 cores


def test_load_before_the_run_is_named_with_the_cores():
    warnings = noise.assess(quiet(load_average=[3.8, 3.0, 2.0]), quiet())
    assert warnings == ["load average 3.8 on 2 cores before the run"]


def test_load_after_above_one_per_core():
    assert noise.assess(quiet(), quiet(load_average=[2.6, 1.0, 1.0])) == ["load average 2.6 on 2 cores after the run"]


def test_a_scaling_governor_and_busy_neighbours_warn():
    busy = [{"pid": 42, "name": "python", "cpu_percent": 95.0}, {"pid": 7, "name": "idle", "cpu_percent": 2.0}]
    warnings = noise.assess(quiet(cpu_governor="powersave"), quiet(busy_processes=busy))
    assert warnings == [
        "CPU frequency governor 'powersave' (not performance): clock changes add noise",
        "other busy processes (CPU% of one core): python (pid 42) 95%",
    ]


def test_unreadable_fields_are_not_assessed():
    unknown = {"load_average": None, "cpu_count": None, "cpu_governor": None, "busy_processes": []}
    assert noise.assess(unknown, unknown) == []
