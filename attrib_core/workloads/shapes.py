"""A ground-truth image task: the class is the shape and texture of the one large object.

Localisation metrics need to know which pixels carry the label. Here every image is drawn
from a seed: a textured background (colour noise at two scales plus pixel grain), two to
four small flat-coloured distractors of any of the class shapes, and on top of them one
large object, tilted and coloured at random, whose shape and texture together are the label:
a checked circle, a square striped along it, a triangle striped across it, or a dotted cross.
The pixel mask of that object is the ground truth. Distractors share the class shapes and
colours but no texture, so only the large object predicts the label (texture makes the task
learnable in minutes on a CPU; a model may use the shape, the texture, or both).

`shapes_resnet18` is torchvision's resnet18 (ReLU-per-use rebuild, as the resnet18
workload) trained here on this task, cached under a hash of everything that changes the
weights (generator version and sizes, recipe, torch version, thread count).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from attrib_core.models.small import shuffled_epochs
from attrib_core.workloads.base import (
    WORKLOADS,
    Workload,
    patch_mask,
    register_workload,
    trained_weights,
)

GENERATOR_VERSION = 2
# class -> (shape, texture); every class differs from every other in both
CLASSES = {
    "checked_circle": ("circle", "checks"),
    "striped_square": ("square", "stripes_along"),
    "crossstriped_triangle": ("triangle", "stripes_across"),
    "dotted_cross": ("cross", "dots"),
}
SHAPES = tuple(shape for shape, _ in CLASSES.values())


@dataclass(frozen=True)
class ShapesTask:
    """What the generator draws; its fields are part of the trained model's cache key."""

    size: int = 64  # pixels a side
    object_radius: tuple[float, float] = (12.0, 18.0)  # the class-defining object
    distractor_radius: tuple[float, float] = (4.0, 7.0)
    n_distractors: tuple[int, int] = (2, 4)  # inclusive range
    texture_period: tuple[float, float] = (4.0, 6.0)  # pixels per cycle of the object's texture
    max_rotation_deg: float = 20.0  # the object's tilt; distractors turn freely


def _shape_mask(shape: str, u: np.ndarray, v: np.ndarray, radius: float) -> np.ndarray:
    """Boolean mask of a shape centred at the origin of the rotated coordinates (u, v)."""
    if shape == "circle":
        return u**2 + v**2 <= radius**2
    if shape == "square":
        half = radius * 0.8
        return np.maximum(np.abs(u), np.abs(v)) <= half
    if shape == "triangle":  # equilateral, circumradius `radius`: inside all three edges
        edges = [u * math.cos(a) + v * math.sin(a) for a in (math.pi / 2 + k * 2 * math.pi / 3 for k in range(3))]
        return np.all(np.stack(edges) <= radius / 2, axis=0)
    if shape == "cross":
        arm = radius * 0.32
        return ((np.abs(u) <= arm) & (np.abs(v) <= radius)) | ((np.abs(v) <= arm) & (np.abs(u) <= radius))
    raise ValueError(f"unknown shape {shape!r}; valid: {', '.join(SHAPES)}")


def _texture(texture: str, u: np.ndarray, v: np.ndarray, period: float) -> np.ndarray:
    """Boolean pattern (True: the bright colour) in the object's own coordinates."""
    if texture == "checks":
        return (np.floor(u / period) + np.floor(v / period)) % 2 == 0
    if texture == "stripes_along":
        return np.floor(v / period) % 2 == 0
    if texture == "stripes_across":
        return np.floor(u / period) % 2 == 0
    if texture == "dots":
        return (u % period - period / 2) ** 2 + (v % period - period / 2) ** 2 > (period / 3) ** 2
    raise ValueError(f"unknown texture {texture!r}; valid: checks, stripes_along, stripes_across, dots")


def _coordinates(size: int, cy: float, cx: float, angle: float) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates rotated by `angle` about (cy, cx)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    dy, dx = yy - cy, xx - cx
    return dx * math.cos(angle) + dy * math.sin(angle), -dx * math.sin(angle) + dy * math.cos(angle)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """(3, H, W) colour noise at two scales (bicubic from 4x4 and 16x16 grids) plus grain."""
    image = np.zeros((3, size, size))
    for cells, low, high in ((4, 0.15, 0.55), (16, -0.12, 0.12)):
        coarse = torch.as_tensor(rng.uniform(low, high, size=(1, 3, cells, cells)), dtype=torch.float64)
        image += nn.functional.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=True)[0].numpy()
    return image + rng.normal(0.0, 0.03, size=(3, size, size))


def _colour(rng: np.random.Generator) -> np.ndarray:
    """A saturated, bright colour, so objects stand out from the duller background."""
    colour = rng.uniform(0.0, 1.0, size=3)
    colour[rng.integers(3)] = rng.uniform(0.85, 1.0)
    return colour


def make_example(seed: int, task: ShapesTask = ShapesTask()) -> tuple[np.ndarray, np.ndarray, int]:
    """(image (3, H, W) float32 in [0, 1], mask (H, W) bool, label) drawn from `seed` alone."""
    rng = np.random.default_rng([GENERATOR_VERSION, seed])
    size = task.size
    label = int(rng.integers(len(CLASSES)))
    image = _background(rng, size)
    radius = rng.uniform(*task.object_radius)
    margin = radius + 1
    cy, cx = rng.uniform(margin, size - margin, size=2)
    placed = 0
    wanted = int(rng.integers(task.n_distractors[0], task.n_distractors[1] + 1))
    for _ in range(50 * wanted):  # rejection sampling: distractors never touch the object
        if placed == wanted:
            break
        r = rng.uniform(*task.distractor_radius)
        y, x = rng.uniform(r, size - r, size=2)
        if math.hypot(y - cy, x - cx) < radius + r + 2:
            continue
        u, v = _coordinates(size, y, x, rng.uniform(0, 2 * math.pi))
        image[:, _shape_mask(SHAPES[int(rng.integers(len(SHAPES)))], u, v, r)] = _colour(rng)[:, None]
        placed += 1
    shape, texture = list(CLASSES.values())[label]
    u, v = _coordinates(size, cy, cx, math.radians(rng.uniform(-task.max_rotation_deg, task.max_rotation_deg)))
    mask = _shape_mask(shape, u, v, radius)
    bright = _colour(rng)
    pattern = _texture(texture, u + rng.uniform(0, 10), v + rng.uniform(0, 10), rng.uniform(*task.texture_period))
    image[:, mask] = np.where(pattern[mask], bright[:, None], 0.3 * bright[:, None])
    return np.clip(image, 0.0, 1.0).astype(np.float32), mask, label


def make_dataset(first_seed: int, n: int, task: ShapesTask = ShapesTask()) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Images (n, 3, H, W), masks (n, H, W) and labels (n,) for seeds first_seed .. first_seed + n - 1."""
    if n < 1:
        raise ValueError(f"n must be a positive number of examples, got {n!r}")
    examples = [make_example(first_seed + i, task) for i in range(n)]
    images, masks, labels = zip(*examples, strict=True)
    return np.stack(images), np.stack(masks), np.asarray(labels, dtype=np.int64)


# --- the trained model ------------------------------------------------------------------

SHAPES_RECIPE_VERSION = 1
TRAIN_FIRST_SEED = 0
TEST_FIRST_SEED = 1_000_000  # held-out images come from seeds training never sees
N_TEST = 500  # held-out images the accuracy is measured on


@dataclass(frozen=True)
class ShapesRecipe:
    """Everything besides the task that decides the trained weights; hashed into the cache key."""

    n_train: int = 3000
    epochs: int = 2
    batch_size: int = 16  # small batches: more steps for the same compute, which this short schedule needs
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    seed: int = 0
    # CPU reductions split by thread, so the count is part of what makes the weights reproducible;
    # one thread also trained 2.5x faster than two on the shared 2-core machine
    threads: int = 1


def shapes_resnet18() -> nn.Module:
    """torchvision's resnet18 with one output per class, ReLUs rebuilt one per use."""
    from torchvision.models import resnet18

    from attrib_core.models.resnet import distinct_relus

    return distinct_relus(resnet18(weights=None, num_classes=len(CLASSES)))


def train_shapes_model(model: nn.Module, x: np.ndarray, y: np.ndarray, recipe: ShapesRecipe) -> float:
    """AdamW with a one-cycle schedule, shuffled by the recipe's seed; returns seconds taken."""
    started = time.perf_counter()
    threads = torch.get_num_threads()
    torch.set_num_threads(recipe.threads)
    try:
        generator = torch.Generator().manual_seed(recipe.seed)
        images, labels = torch.as_tensor(x), torch.as_tensor(y)
        optimiser = torch.optim.AdamW(model.parameters(), lr=recipe.learning_rate, weight_decay=recipe.weight_decay)
        steps_per_epoch = math.ceil(len(images) / recipe.batch_size)
        schedule = torch.optim.lr_scheduler.OneCycleLR(
            optimiser, max_lr=recipe.learning_rate, total_steps=recipe.epochs * steps_per_epoch
        )
        shuffled_epochs(model, images, labels, optimiser, recipe.epochs, recipe.batch_size, generator, schedule)
    finally:
        torch.set_num_threads(threads)
    model.eval()
    for p in model.parameters():
        p.grad = None
    return time.perf_counter() - started


def held_out_accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray, batch_size: int = 250) -> float:
    with torch.no_grad():
        preds = [model(torch.as_tensor(x[i : i + batch_size])).argmax(1) for i in range(0, len(x), batch_size)]
    return float((torch.cat(preds).numpy() == y).mean())


def recipe_key(task: ShapesTask, recipe: ShapesRecipe) -> dict:
    """The cache key: every input that changes the trained weights."""
    return {
        "generator": GENERATOR_VERSION,
        "task": asdict(task),
        "recipe": asdict(recipe),
        "version": SHAPES_RECIPE_VERSION,
        "train_first_seed": TRAIN_FIRST_SEED,
        "architecture": "torchvision.resnet18+distinct_relus",
        "torch": torch.__version__,
    }


def trained_shapes_model(
    task: ShapesTask = ShapesTask(), recipe: ShapesRecipe = ShapesRecipe()
) -> tuple[nn.Module, str, float | None]:
    """(model, weights label, training seconds or None when loaded from the cache)."""
    torch.manual_seed(recipe.seed)
    model = shapes_resnet18()
    seconds: list[float] = []

    def train(m: nn.Module) -> None:
        x, _, y = make_dataset(TRAIN_FIRST_SEED, recipe.n_train, task)
        seconds.append(train_shapes_model(m, x, y, recipe))

    weights = trained_weights(model, "shapes_resnet18", recipe_key(task, recipe), train)
    return model.eval(), weights, (seconds[0] if seconds else None)


N_EXPLAINED = 16  # held-out examples the workload's cells explain


@register_workload(
    "shapes_resnet18",
    "torchvision resnet18 trained here on a 64x64 shapes task with distractors; the object's mask is known",
    is_image=True,
    layer="layer4",
    method_defaults={
        # the tutorial's 15x15 window at stride 8 on 224 px, scaled to 64 px
        "Occlusion": {"sliding_window_shapes": (3, 5, 5), "strides": (3, 2, 2)},
    },
    noise_stdevs=0.15,  # inputs in [0, 1]
)
def _shapes_resnet18() -> Workload:
    task, recipe = ShapesTask(), ShapesRecipe()
    model, weights, train_s = trained_shapes_model(task, recipe)
    x_test, masks, y_test = make_dataset(TEST_FIRST_SEED, N_TEST, task)
    size = task.size
    generator = torch.Generator().manual_seed(0)
    background = torch.as_tensor(x_test[-8:])[torch.randperm(8, generator=generator)]
    info = {
        "classes": list(CLASSES),
        "held_out_accuracy": held_out_accuracy(model, x_test, y_test),
        "n_test": N_TEST,
        "relu": "distinct module per use (DeepLift-safe), same outputs",
    }
    if train_s is not None:
        info["train_s"] = train_s
    return Workload(
        name="shapes_resnet18",
        model=model,
        inputs=torch.as_tensor(x_test[:N_EXPLAINED]),
        targets=torch.as_tensor(y_test[:N_EXPLAINED]),
        baseline=torch.zeros(1, 3, size, size),
        background=background,
        feature_mask=patch_mask(size, size, 4),  # 256 patches of 4x4, as resnet18's 16x16 of 224
        layer_name="layer4",
        neuron=(0, 1, 1),
        output_name="fc",
        weights=weights,
        description=WORKLOADS.get("shapes_resnet18").description,
        method_defaults=WORKLOADS.get("shapes_resnet18").method_defaults,
        # occlusion's reference: a 3x3 window at stride 1 (3844 windows), finer than the tutorial's
        # scaled 5x5 at stride 2; the finest (12,288 windows of one pixel) costs minutes here
        reference_knobs={"Occlusion": {"sliding_window_shapes": (3, 3, 3), "strides": (3, 1, 1)}},
        info=info,
        masks=torch.as_tensor(masks[:N_EXPLAINED])[:, None],
    )
