"""attrib_core.workloads.shapes: the ground-truth task is reproducible from its seeds, its masks
mark the class-defining object, and the resnet18 trained on it is accurate and cached by recipe."""

from __future__ import annotations

import dataclasses
import hashlib
import os

import numpy as np
import pytest
import torch

from attrib_core.cache import stable_hash
from attrib_core.models.resnet import DistinctReluBasicBlock
from attrib_core.workloads import WORKLOADS, load_workload
from attrib_core.workloads.shapes import (
    CLASSES,
    N_TEST,
    TEST_FIRST_SEED,
    ShapesRecipe,
    ShapesTask,
    held_out_accuracy,
    make_dataset,
    make_example,
    recipe_key,
    shapes_resnet18,
    train_shapes_model,
    trained_shapes_model,
)

pytestmark = pytest.mark.usefixtures("one_thread")

# Measured: 1.000 on the 500 held-out images (500/500). The floor leaves room for 5 errors
# where another machine or torch trains slightly different weights; the issue asks >= 0.95.
HELD_OUT_ACCURACY_FLOOR = 0.99
# Seeds 0-7 of ShapesTask(): the masks and labels the generator draws. If you change the
# drawing on purpose, bump GENERATOR_VERSION (it keys the trained model's cache) and update this.
MASKS_AND_LABELS_SHA256 = "1b48f3bc538d7fe2477899e06d034132d23f8bb2fb16d001ab342b0473ba46df"


def sha256(*arrays: np.ndarray) -> str:
    digest = hashlib.sha256()
    for array in arrays:
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def state_hash(model: torch.nn.Module) -> str:
    return sha256(*(t.detach().numpy() for t in model.state_dict().values()))


# --- the generator ----------------------------------------------------------------------


def test_same_seeds_give_identical_images_masks_and_labels():
    first, second = make_dataset(0, 8), make_dataset(0, 8)
    assert sha256(*first) == sha256(*second)
    assert sha256(*make_dataset(8, 8)) != sha256(*first)


def test_masks_and_labels_match_the_recorded_hash():
    _, masks, labels = make_dataset(0, 8)
    assert sha256(masks, labels) == MASKS_AND_LABELS_SHA256


def test_an_example_depends_only_on_its_own_seed():
    images, masks, labels = make_dataset(5, 3)
    image, mask, label = make_example(6)
    assert np.array_equal(images[1], image) and np.array_equal(masks[1], mask) and labels[1] == label


def test_images_masks_and_labels_have_the_documented_shapes_and_ranges():
    images, masks, labels = make_dataset(0, 200)
    assert images.shape == (200, 3, 64, 64) and images.dtype == np.float32
    assert masks.shape == (200, 64, 64) and masks.dtype == bool
    assert images.min() >= 0.0 and images.max() <= 1.0
    assert set(labels.tolist()) == set(range(len(CLASSES))) and len(CLASSES) >= 4
    area = masks.reshape(200, -1).mean(1)
    assert area.min() > 0.04 and area.max() < 0.5  # a large object, never the whole image


def test_the_mask_covers_exactly_the_two_coloured_object_on_top():
    images, masks, _ = make_dataset(0, 50)
    for image, mask in zip(images, masks, strict=True):
        colours = np.unique(image[:, mask].T, axis=0)
        assert len(colours) == 2  # its texture's two colours: nothing is drawn over the object
        ring = np.zeros_like(mask)  # pixels just outside the object have neither colour
        ring[1:-1, 1:-1] = ~mask[1:-1, 1:-1] & (mask[:-2, 1:-1] | mask[2:, 1:-1])
        outside = image[:, ring].T
        assert not any(np.all(outside == c, axis=1).any() for c in colours)


def test_the_textured_background_and_distractors_are_present():
    images, masks, _ = make_dataset(0, 20)
    for image, mask in zip(images, masks, strict=True):
        outside = image[:, ~mask]
        colours = {tuple(c) for c in outside.T.round(3)}
        assert len(colours) > 1000  # no flat background: noise and stripes everywhere
        flat = np.all(outside == np.roll(outside, 1, axis=1), axis=0)
        assert flat.sum() >= 10  # distractors: flat-coloured runs of pixels outside the mask


def test_bad_shape_and_size_are_named():
    from attrib_core.workloads.shapes import _shape_mask, _texture

    with pytest.raises(ValueError, match="unknown shape 'hexagon'; valid: circle, square"):
        _shape_mask("hexagon", np.zeros(1), np.zeros(1), 1.0)
    with pytest.raises(ValueError, match="unknown texture 'plaid'; valid: checks"):
        _texture("plaid", np.zeros(1), np.zeros(1), 4.0)
    with pytest.raises(ValueError, match="got 0"):
        make_dataset(0, 0)


# --- training and its cache key ---------------------------------------------------------


TINY_TASK = ShapesTask(size=32, object_radius=(7.0, 9.0), distractor_radius=(2.0, 3.0), texture_period=(3.0, 4.0))
TINY_RECIPE = ShapesRecipe(n_train=16, epochs=1, batch_size=8, threads=1)


def tiny_training(seed: int) -> str:
    recipe = dataclasses.replace(TINY_RECIPE, seed=seed)
    torch.manual_seed(recipe.seed)
    model = shapes_resnet18()
    x, _, y = make_dataset(0, recipe.n_train, TINY_TASK)
    train_shapes_model(model, x, y, recipe)
    return state_hash(model)


def test_training_is_reproducible_from_the_seed():
    assert tiny_training(0) == tiny_training(0)
    assert tiny_training(1) != tiny_training(0)


@pytest.mark.parametrize("field", [f.name for f in dataclasses.fields(ShapesRecipe)])
def test_every_recipe_field_changes_the_cache_key(field):
    base = ShapesRecipe()
    value = getattr(base, field)
    changed = dataclasses.replace(base, **{field: value * 2 if value else 1})
    assert stable_hash(recipe_key(ShapesTask(), changed)) != stable_hash(recipe_key(ShapesTask(), base))


@pytest.mark.parametrize("field", [f.name for f in dataclasses.fields(ShapesTask)])
def test_every_task_field_changes_the_cache_key(field):
    base = ShapesTask()
    value = getattr(base, field)
    bumped = tuple(v + 1 for v in value) if isinstance(value, tuple) else value + 1
    changed = dataclasses.replace(base, **{field: bumped})
    assert stable_hash(recipe_key(changed, ShapesRecipe())) != stable_hash(recipe_key(ShapesTask(), ShapesRecipe()))


# --- the trained workload (trains once on a fresh cache, then loads) ---------------------


@pytest.fixture(scope="module")
def shapes():
    return load_workload("shapes_resnet18")


def test_trained_model_clears_the_accuracy_floor_on_held_out_seeds(shapes):
    x_test, _, y_test = make_dataset(TEST_FIRST_SEED, N_TEST)
    recomputed = held_out_accuracy(shapes.model, x_test, y_test)
    assert recomputed == shapes.info["held_out_accuracy"]
    assert recomputed >= HELD_OUT_ACCURACY_FLOOR


def test_weights_are_labelled_with_the_recipe_hash(shapes):
    assert shapes.weights == f"trained:{stable_hash(recipe_key(ShapesTask(), ShapesRecipe()))}"


def test_workload_is_torchvision_resnet18_with_one_relu_per_use(shapes):
    assert WORKLOADS.get("shapes_resnet18").is_image and shapes.is_image
    assert shapes.model.fc.out_features == len(CLASSES)
    assert all(isinstance(b, DistinctReluBasicBlock) for s in range(1, 5) for b in getattr(shapes.model, f"layer{s}"))
    relus = [m for m in shapes.model.modules() if isinstance(m, torch.nn.ReLU)]
    assert len(relus) == len({id(m) for m in relus}) == 1 + 2 * 8
    assert shapes.layer_name == "layer4"


def test_workload_masks_line_up_with_its_inputs(shapes):
    images, masks, labels = make_dataset(TEST_FIRST_SEED, len(shapes.inputs))
    assert torch.equal(shapes.inputs, torch.as_tensor(images))
    assert torch.equal(shapes.targets, torch.as_tensor(labels))
    assert shapes.masks.shape == (len(images), 1, 64, 64) and torch.equal(shapes.masks[:, 0], torch.as_tensor(masks))
    cycled = shapes.batch_masks(len(images) + 2)
    assert torch.equal(cycled[-2:], shapes.masks[:2])


@pytest.mark.skipif(
    not os.environ.get("ATTRIB_BENCH_RETRAIN"), reason="retrains the full recipe (minutes); set ATTRIB_BENCH_RETRAIN=1"
)
def test_full_recipe_retrains_to_the_cached_weights(shapes, tmp_path, monkeypatch):
    monkeypatch.setenv("ATTRIB_BENCH_CACHE", str(tmp_path))
    retrained, weights, train_s = trained_shapes_model()
    assert train_s is not None and weights == shapes.weights
    assert state_hash(retrained) == state_hash(shapes.model)
