"""Occlusion's window and stride: the default that follows from an input's shape, and how many
positions Captum places."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from attrib_core.methods.knobs import AUTO


def occlusion_windows(input_shape: tuple[int, ...], window: tuple[int, ...], stride: tuple[int, ...]) -> int:
    """Window positions per example, as Captum places them (a last, clipped one included)."""
    return math.prod(math.ceil((d - w) / s) + 1 for d, w, s in zip(input_shape, window, stride, strict=True))


def shape_occlusion_window(input_shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
    """Occlusion's window and stride for one example of `input_shape`, when none is given.

    Every channel is occluded together (as the Captum tutorial's (3, 15, 15) window on images),
    and the window spans a fixed share of each other dimension, moved by half its width:
    (F,) features and token ids one element; (C, T) series T/16 steps; (C, H, W) images 1/14 of
    the shorter side (the tutorial's 15 px on 224); (C, D, H, W) volumes 1/8 of the shortest
    side, since windows multiply over three dimensions there."""
    if len(input_shape) < 2:
        return {"sliding_window_shapes": (1,) * len(input_shape), "strides": (1,) * len(input_shape)}
    channels, spatial = input_shape[0], input_shape[1:]
    share = {1: 16, 2: 14}.get(len(spatial), 8)
    side = max(1, min(spatial) // share)
    stride = max(1, side // 2)
    return {
        "sliding_window_shapes": (channels, *(min(side, d) for d in spatial)),
        "strides": (channels, *(stride for _ in spatial)),
    }


WINDOW_KNOBS = ("sliding_window_shapes", "strides")


def input_knobs(knobs: Mapping[str, Any], index: int) -> dict[str, Any]:
    """The knobs for input `index` of several: a window given per input, (w1, w2, ...), is split;
    one window (or "auto") is shared by every input."""

    def per_input(value: Any) -> bool:
        return isinstance(value, (tuple, list)) and bool(value) and isinstance(value[0], (tuple, list))

    return {k: v[index] if k in WINDOW_KNOBS and per_input(v) else v for k, v in knobs.items()}


def concrete_window(knobs: Mapping[str, Any], input_shape: tuple[int, ...]) -> dict[str, Any]:
    """The knobs with an "auto" window or stride replaced by the input shape's default."""
    auto = shape_occlusion_window(input_shape)
    return {k: auto[k] if v == AUTO and k in auto else v for k, v in knobs.items()}
