"""The device check: one command that proves the harness on a GPU machine within a time budget
(CUDA tests, timers against CUDA events, peak memory against a known allocation, a GPU-sized slice
of the `full` preset, a deliberate out-of-memory, and the out-of-memory frontier of each batching
knob), writing a journal line per finished step so a kill keeps what was measured.

`--dry-run` takes the same path on the CPU with tiny workloads, so the logic is tested without a
GPU; there an imposed memory cap stands in for the device's memory and is labelled as such.
"""
