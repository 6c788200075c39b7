"""attrib_core.registry: one small name -> spec registry, shared by methods and workloads."""

from __future__ import annotations

import pytest

from attrib_core.methods import METHODS, get_method, register_method
from attrib_core.registry import Registry, UnknownNameError
from attrib_core.workloads import WORKLOADS, register_workload


@pytest.fixture
def fruits() -> Registry[int]:
    registry: Registry[int] = Registry("fruit")
    registry.register("apple", 1)
    registry.register("pear", 2)
    registry.register("fig", 3)
    return registry


def test_lookup_and_registration_order(fruits):
    assert fruits.get("pear") == 2
    assert fruits.names() == ["apple", "pear", "fig"]
    assert list(fruits) == [1, 2, 3]
    assert len(fruits) == 3
    assert "fig" in fruits and "kiwi" not in fruits


def test_register_returns_the_item():
    registry: Registry[str] = Registry("thing")
    assert registry.register("a", "spec") == "spec"


def test_unknown_name_names_it_and_lists_the_known_ones(fruits):
    with pytest.raises(UnknownNameError) as caught:
        fruits.get("kiwi")
    assert str(caught.value) == "unknown fruit 'kiwi'; known: apple, pear, fig"
    assert isinstance(caught.value, KeyError)  # callers may catch it as a missing key
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_unknown_name_in_an_empty_registry():
    with pytest.raises(UnknownNameError, match=r"^unknown thing 'x'; known: $"):
        Registry("thing").get("x")


def test_duplicate_registration_raises_and_keeps_the_first(fruits):
    with pytest.raises(ValueError, match=r"fruit 'pear' is already registered"):
        fruits.register("pear", 99)
    assert fruits.get("pear") == 2
    assert len(fruits) == 3


def test_method_registry():
    assert get_method("IntegratedGradients") is METHODS.get("IntegratedGradients")
    assert all(METHODS.get(name).name == name for name in METHODS.names())
    with pytest.raises(UnknownNameError, match=r"unknown method 'IGG'; known: IntegratedGradients, Saliency, "):
        get_method("IGG")


def test_methods_cannot_be_registered_twice():
    before = METHODS.names()
    with pytest.raises(ValueError, match=r"method 'Saliency' is already registered"):
        register_method(get_method("Saliency"))
    assert METHODS.names() == before


def test_workload_registry():
    assert {"digits_cnn", "tabular_mlp", "resnet18"} <= set(WORKLOADS.names())
    assert all(WORKLOADS.get(name).name == name for name in WORKLOADS.names())
    with pytest.raises(UnknownNameError, match=r"unknown workload 'mnist'; known: digits_cnn, tabular_mlp, resnet18"):
        WORKLOADS.get("mnist")


def test_workloads_cannot_be_registered_twice():
    before = WORKLOADS.names()
    with pytest.raises(ValueError, match=r"workload 'digits_cnn' is already registered"):
        register_workload("digits_cnn", "a second digits workload", is_image=True)(lambda: None)
    assert WORKLOADS.names() == before
