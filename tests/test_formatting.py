"""attrib_core.formatting: one way to print times, sizes and clocks."""

from datetime import UTC, datetime

import pytest

from attrib_core.formatting import clock, knob_value, seconds, size_bytes, timestamp


@pytest.mark.parametrize(
    ("value", "text"),
    [(8.4e-4, "840 µs"), (0.0123, "12.3 ms"), (23.8, "23.8 s"), (150.0, "2.5 min"), (9000.0, "2.5 h"), (None, "-")],
)
def test_seconds_in_human_units(value, text):
    assert seconds(value) == text


@pytest.mark.parametrize(
    ("value", "text"), [(512, "512 B"), (4608, "4.5 KiB"), (268435456, "256 MiB"), (4.3 * 2**30, "4.3 GiB")]
)
def test_sizes_in_binary_units(value, text):
    assert size_bytes(value) == text


def test_clock_never_shows_sixty_seconds():
    assert clock(359.7) == "05:59"  # 5 min 59.7 s: whole seconds, not "05:60"
    assert clock(3725) == "1:02:05"


def test_timestamp_and_knob_values():
    assert timestamp(datetime(2026, 11, 29, 13, 48, 44, tzinfo=UTC)) == "20261129T134844Z"
    assert (
        knob_value((3, 15, 15)) == "3x15x15" and knob_value(4.0) == "4" and knob_value("riemann_left") == "riemann_left"
    )
