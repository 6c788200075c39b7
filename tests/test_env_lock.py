"""The lock record in every results file: the lock's hash and the pins the interpreter does not honour."""

from __future__ import annotations

import hashlib
import importlib.metadata

import pytest

from attrib_core import env_lock


def test_read_pins_normalises_names_and_skips_comments():
    text = "# header\n\nJinja2==3.1.6\ntyping_extensions==4.16.0  # why\ntorch==2.14.1+cpu\n"
    assert env_lock.read_pins(text) == {"jinja2": "3.1.6", "typing-extensions": "4.16.0", "torch": "2.14.1+cpu"}


def test_read_pins_names_the_line_that_is_not_a_pin():
    with pytest.raises(ValueError, match=r"line 2 .*'numpy>=2'"):
        env_lock.read_pins("torch==2.14.1\nnumpy>=2\n")


def test_mismatches_ignore_local_labels_and_absent_packages():
    pins = {"torch": "2.14.1", "numpy": "2.4.6", "nvidia-cublas": "13.1.1.3", "pandas": "3.1.1"}
    installed = {"torch": "2.14.1+cpu", "numpy": "2.4.5", "nvidia-cublas": None, "pandas": "3.1.1"}
    assert env_lock.lock_mismatches(pins, installed) == {"numpy": {"locked": "2.4.6", "installed": "2.4.5"}}


def test_lock_record_hashes_the_file_and_checks_the_running_interpreter(tmp_path):
    pytest_version = importlib.metadata.version("pytest")
    lock = tmp_path / "requirements" / "bench.lock"
    lock.parent.mkdir()
    lock.write_text(f"# pins\npytest=={pytest_version}\nPluggy==0.0.1\nnot-installed-anywhere==1.0\n")
    record = env_lock.lock_record(lock)
    assert record["lock_file"] == "requirements/bench.lock"
    assert record["lock_sha256"] == hashlib.sha256(lock.read_bytes()).hexdigest()
    assert record["lock_mismatches"] == {
        "pluggy": {"locked": "0.0.1", "installed": importlib.metadata.version("pluggy")}
    }


def test_lock_record_without_a_lock_says_none(tmp_path):
    record = env_lock.lock_record(tmp_path / "missing.lock")
    assert record == {"lock_file": None, "lock_sha256": None, "lock_mismatches": None}


def test_the_committed_lock_pins_the_bench_stack():
    pins = env_lock.read_pins(env_lock.BENCH_LOCK.read_text())
    assert {"torch", "torchvision", "captum", "pytest-benchmark", "numpy"} <= pins.keys()


def test_environment_carries_the_lock_record():
    from attrib_core import measure  # torch

    env = measure.environment()
    assert env["lock_sha256"] == hashlib.sha256(env_lock.BENCH_LOCK.read_bytes()).hexdigest()
    assert env["lock_file"] == "requirements/bench.lock"
    assert isinstance(env["lock_mismatches"], dict)
