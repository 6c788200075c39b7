"""Built-in workloads: digits_cnn and tabular_mlp (trained here on scikit-learn's sets) and
resnet18 as in the Captum tutorial (torchvision's weights when available)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from attrib_core.workloads.base import (
    WORKLOADS,
    Workload,
    patch_mask,
    register_workload,
    trained_weights,
)

# --- digits CNN -------------------------------------------------------------------------

DIGITS_RECIPE_VERSION = 1


def digits_split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """scikit-learn's 1797 handwritten digits, scaled to [0, 1], stratified 75/25 split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    x = np.ascontiguousarray((data.images / 16.0).astype(np.float32)[:, None])
    return train_test_split(x, data.target, test_size=0.25, random_state=0, stratify=data.target)


@register_workload(
    "digits_cnn",
    "small CNN on scikit-learn's 8x8 handwritten digits (fast, for tests and CI)",
    is_image=True,
    layer="conv2",
    method_defaults={
        "Occlusion": {"sliding_window_shapes": (1, 2, 2), "strides": (1, 1, 1)},
    },
    noise_stdevs=0.15,  # inputs in [0, 1]
)
def _digits_cnn() -> Workload:
    from attrib_core.models.small import DigitsCNN, TrainingRecipe, accuracy, train_classifier

    x_train, x_test, y_train, y_test = digits_split()
    recipe = TrainingRecipe(epochs=30)
    torch.manual_seed(recipe.seed)
    model = DigitsCNN()
    weights = trained_weights(
        model,
        "digits_cnn",
        {"recipe": recipe.__dict__, "version": DIGITS_RECIPE_VERSION, "torch": torch.__version__},
        lambda m: train_classifier(m, x_train, y_train, recipe),
    )
    generator = torch.Generator().manual_seed(0)
    background = torch.as_tensor(x_train)[torch.randperm(len(x_train), generator=generator)[:8]]
    return Workload(
        name="digits_cnn",
        model=model,
        inputs=torch.as_tensor(x_test[:64]),
        targets=torch.as_tensor(y_test[:64]),
        baseline=torch.zeros(1, 1, 8, 8),
        background=background,
        feature_mask=patch_mask(8, 8, 1),
        layer_name="conv2",
        neuron=(31, 1, 3),  # the conv2 unit whose gradient reaches the logits most often
        output_name="fc2",
        weights=weights,
        description=WORKLOADS.get("digits_cnn").description,
        method_defaults=WORKLOADS.get("digits_cnn").method_defaults,
        info={"held_out_accuracy": accuracy(model, x_test, y_test), "n_test": len(y_test)},
    )


# --- tabular MLP ------------------------------------------------------------------------

TABULAR_RECIPE_VERSION = 1


def breast_cancer_split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """scikit-learn's breast cancer set (569 x 30), standardised on the training part."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split

    data = load_breast_cancer()
    x_train, x_test, y_train, y_test = train_test_split(
        data.data, data.target, test_size=0.25, random_state=0, stratify=data.target
    )
    mean, std = x_train.mean(0), x_train.std(0)
    return (
        ((x_train - mean) / std).astype(np.float32),
        ((x_test - mean) / std).astype(np.float32),
        y_train,
        y_test,
    )


@register_workload(
    "tabular_mlp",
    "MLP on scikit-learn's breast cancer set (30 features), for sampling methods",
    is_image=False,
    layer="fc2",
    method_defaults={
        "Occlusion": {"sliding_window_shapes": (1,), "strides": (1,)},
    },
    noise_stdevs=0.15,  # standardised features: 0.15 of a training standard deviation
)
def _tabular_mlp() -> Workload:
    from attrib_core.models.small import TabularMLP, TrainingRecipe, accuracy, train_classifier

    x_train, x_test, y_train, y_test = breast_cancer_split()
    recipe = TrainingRecipe(epochs=40)
    torch.manual_seed(recipe.seed)
    model = TabularMLP(x_train.shape[1], 2)
    weights = trained_weights(
        model,
        "tabular_mlp",
        {"recipe": recipe.__dict__, "version": TABULAR_RECIPE_VERSION, "torch": torch.__version__},
        lambda m: train_classifier(m, x_train, y_train, recipe),
    )
    n_features = x_train.shape[1]
    generator = torch.Generator().manual_seed(0)
    background = torch.as_tensor(x_train)[torch.randperm(len(x_train), generator=generator)[:8]]
    return Workload(
        name="tabular_mlp",
        model=model,
        inputs=torch.as_tensor(x_test[:64]),
        targets=torch.as_tensor(y_test[:64]),
        baseline=torch.zeros(1, n_features),  # the training mean after standardisation
        background=background,
        feature_mask=torch.arange(n_features)[None],
        layer_name="fc2",
        neuron=(0,),
        output_name="fc3",
        weights=weights,
        description=WORKLOADS.get("tabular_mlp").description,
        method_defaults=WORKLOADS.get("tabular_mlp").method_defaults,
        info={"held_out_accuracy": accuracy(model, x_test, y_test), "n_test": len(y_test)},
    )


# --- resnet18, as in the Captum tutorial ------------------------------------------------

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PHOTOS = ("chelsea", "coffee", "astronaut", "rocket")  # chelsea is the tutorial's cat


def photos(preprocess: Callable[[Any], torch.Tensor]) -> torch.Tensor:
    """Photos shipped in scikit-image (real images, no download), each through `preprocess`
    (a PIL image in, a (C, H, W) tensor out)."""
    import skimage.data
    from PIL import Image

    return torch.stack([preprocess(Image.fromarray(getattr(skimage.data, name)()).convert("RGB")) for name in PHOTOS])


def imagenet_photos(size: int = 224) -> torch.Tensor:
    """The photos with the tutorial's resize, centre crop, normalise."""
    from torchvision import transforms

    return photos(
        transforms.Compose(
            [
                transforms.Resize(size),
                transforms.CenterCrop(size),
                transforms.ToTensor(),
                transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
            ]
        )
    )


@register_workload(
    "resnet18",
    "torchvision resnet18 (IMAGENET1K_V1 if available) on scikit-image photos, 224x224",
    is_image=True,
    layer="layer3.1.conv2",
    method_defaults={
        "Occlusion": {"sliding_window_shapes": (3, 15, 15), "strides": (3, 8, 8)},  # the tutorial's
    },
    noise_stdevs=0.7,  # normalised pixels span about 4.6: 15% of that
)
def _resnet18() -> Workload:
    from attrib_core.models.resnet import distinct_relus, load_resnet18

    model, weights = load_resnet18()
    model = distinct_relus(model).eval()
    inputs = imagenet_photos()
    with torch.no_grad():
        targets = model(inputs).argmax(1)  # explain the predicted class, as the tutorial does
    generator = torch.Generator().manual_seed(0)
    background = torch.cat([torch.zeros(1, 3, 224, 224), 0.5 * torch.randn(3, 3, 224, 224, generator=generator)])
    return Workload(
        name="resnet18",
        model=model,
        inputs=inputs,
        targets=targets,
        baseline=torch.zeros(1, 3, 224, 224),
        background=background,
        feature_mask=patch_mask(224, 224, 16),
        layer_name="layer3.1.conv2",
        neuron=(0, 7, 7),
        output_name="fc",
        weights=weights,
        description=WORKLOADS.get("resnet18").description,
        method_defaults=WORKLOADS.get("resnet18").method_defaults,
        # the finest occlusion is 150,528 windows; a 3x8x8 window at stride 4 is 3025 (approximate)
        reference_knobs={"Occlusion": {"sliding_window_shapes": (3, 8, 8), "strides": (3, 4, 4)}},
        info={"photos": list(PHOTOS), "relu": "distinct module per use (DeepLift-safe), same outputs"},
    )
