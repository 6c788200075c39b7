"""Attribution gallery: each method's map of the same input, side by side.

The maps come from the results file's companion `<results>.maps.npz` (the first example of
each ok cell, channels summed, pooled to at most 112 px a side; see attrib_core/suite/cells.py), so the
report shows what the methods produced without running a model. One figure per workload:
2-D maps as images in a diverging colormap (red positive, blue negative, each map scaled to
its own 99.5th percentile of |attribution|, as Captum's visualisations clip outliers),
1-D maps (tabular inputs) as bar charts of the signed attribution per feature, and 1-D maps
of text workloads (cells that record `example_tokens`) as the sentence with each word's
background coloured by its attribution. Image workloads also store their first image, which the
gallery shows first; where the workload has a ground-truth mask (the shapes task) it is outlined
on the image and on every map. A gallery of randomly initialised weights says so in its title.
"""

from __future__ import annotations

import math
import re
import textwrap
import zipfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from attrib_core.analysis.knobs import all_knobs_label, knob_columns
from attrib_core.analysis.render.plots import Rendered, theme
from attrib_core.analysis.render.style import MethodStyle
from attrib_core.analysis.results import ResultsError
from attrib_core.formatting import seconds

COLUMNS = 6
CMAP = "RdBu_r"
CLIP_PERCENTILE = 99.5
POSITIVE, NEGATIVE = "#b2182b", "#2166ac"
GROUND_TRUTH_IMAGE, GROUND_TRUTH_MASK = "__image__", "__mask__"  # maps.npz keys: prefix + workload name
SERIES_INPUT = "__series__"  # maps.npz key prefix: a series workload's first example (C, T)
OUTLINE = "#1a1a1a"


def maps_path(results_path: Path) -> Path:
    return results_path.with_suffix(".maps.npz")


def load_maps(results_path: Path) -> dict[str, np.ndarray]:
    """cell_key -> map for one results file; empty when it has no companion file."""
    path = maps_path(results_path)
    if not path.exists():
        return {}
    try:
        with np.load(path) as archive:
            return {key: archive[key].astype(np.float32) for key in archive.files}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise ResultsError(f"{path}: not a readable maps archive ({exc})") from None


def input_image(maps: dict[tuple[str, str], np.ndarray], workload: str) -> tuple[np.ndarray, np.ndarray | None] | None:
    """(image (H, W, C), mask (H, W) bool or None) stored for this workload in any of the files, or
    None (files from before the run stored every image workload's input)."""
    for (file, key), image in maps.items():
        if key == GROUND_TRUTH_IMAGE + workload:
            mask = maps.get((file, GROUND_TRUTH_MASK + workload))
            return image, (mask > 0.5 if mask is not None else None)
    return None


def series_input(maps: dict[tuple[str, str], np.ndarray], workload: str) -> np.ndarray | None:
    """The (C, T) first example stored for a series workload in any of the files, or None."""
    for (_, key), values in maps.items():
        if key == SERIES_INPUT + workload:
            return values
    return None


def _series(ax: plt.Axes, signal: np.ndarray, values: np.ndarray) -> None:
    """The input's channels as lines, each point coloured by the attribution at its step (a map of
    another length, a layer's, is stretched to the input's)."""
    from matplotlib.collections import LineCollection

    steps = np.arange(signal.shape[-1])
    colour = np.interp(np.linspace(0, len(values) - 1, len(steps)), np.arange(len(values)), values)
    limit = float(np.percentile(np.abs(colour), CLIP_PERCENTILE)) or float(np.abs(colour).max()) or 1.0
    for channel in signal:
        points = np.stack([steps, channel], axis=1)
        segments = LineCollection(np.stack([points[:-1], points[1:]], axis=1), cmap=CMAP, linewidths=2)
        segments.set_array((colour[:-1] + colour[1:]) / 2)
        segments.set_clim(-limit, limit)
        ax.add_collection(segments)
    ax.set_xlim(0, len(steps) - 1)
    ax.set_ylim(float(signal.min()) - 0.1, float(signal.max()) + 0.1)
    ax.set_xticks([])
    ax.tick_params(labelsize=7)


def _outline(ax: plt.Axes, mask: np.ndarray | None, shape: tuple[int, ...]) -> None:
    if mask is not None and mask.shape == shape and mask.any() and not mask.all():
        ax.contour(mask.astype(float), levels=[0.5], colors=OUTLINE, linewidths=1.2)


def displayable(image: np.ndarray) -> tuple[np.ndarray, bool]:
    """The image as matplotlib shows it, and whether it had to be stretched: inputs already in
    [0, 1] as they are; normalised ones (ImageNet mean and std) stretched to their own range."""
    image = image.astype(np.float32).squeeze()
    low, high = float(image.min()), float(image.max())
    if low >= 0.0 and high <= 1.0:
        return image, False
    return (image - low) / ((high - low) or 1.0), True


def _input_panel(ax: plt.Axes, image: np.ndarray, mask: np.ndarray | None) -> None:
    shown, stretched = displayable(image)
    ax.imshow(shown, cmap="gray" if shown.ndim == 2 else None)
    notes = []
    if mask is not None and mask.shape == shown.shape[:2]:
        ax.contour(mask.astype(float), levels=[0.5], colors="white", linewidths=2.4)
        ax.contour(mask.astype(float), levels=[0.5], colors=OUTLINE, linewidths=1.2)
        notes.append("outline: the class-defining\nobject's ground-truth mask")
    if stretched:
        notes.append("normalised input, stretched\nto its own range for display")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)
    ax.set_title("input", fontsize=9.5, fontweight="bold")
    ax.set_xlabel("\n".join(notes) or "the first example", fontsize=7.5)


def pick_cells(df: pd.DataFrame, maps: dict[tuple[str, str], np.ndarray]) -> pd.DataFrame:
    """One cell per (workload, method) that has a map: plain execution (fp32, contiguous),
    smallest batch, most converged (lowest reference error), then fastest."""
    ok = df[(df["status"] == "ok")].copy()
    ok = ok[[(f, k) in maps for f, k in zip(ok["file"], ok["cell_key"], strict=True)]]
    if ok.empty:
        return ok
    ok["_plain"] = (ok["precision"] != "fp32").astype(int) + (ok["memory_format"] != "contiguous").astype(int)
    ok["_error"] = ok["fid_reference_error"] if "fid_reference_error" in ok.columns else np.nan
    ok = ok.sort_values(["_plain", "batch_size", "_error", "median_s"], na_position="last", kind="stable")
    return ok.drop_duplicates(["workload", "method"]).sort_values(["workload", "method"])


def _caption(row: pd.Series, knobs: list[str]) -> str:
    knob_text = all_knobs_label(row, knobs)
    timing = f"median {seconds(row['median_s'])} per call (b{row['batch_size']}, {row['device']})"
    lines = textwrap.wrap(knob_text, 34) if knob_text else []
    mass = pd.to_numeric(pd.Series([row.get("fid_relevance_mass")]), errors="coerce").iloc[0]
    if np.isfinite(mass):
        lines.append(f"relevance mass accuracy {mass:.2f}")
    return "\n".join([*lines, timing])


def _image(ax: plt.Axes, image: np.ndarray) -> None:
    limit = float(np.percentile(np.abs(image), CLIP_PERCENTILE)) or float(np.abs(image).max()) or 1.0
    small = max(image.shape) <= 32
    ax.imshow(image, cmap=CMAP, vmin=-limit, vmax=limit, interpolation="nearest" if small else "bilinear")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)


def _bars(ax: plt.Axes, values: np.ndarray) -> None:
    scale = float(np.abs(values).max()) or 1.0
    frame = pd.DataFrame({"feature": np.arange(len(values)), "value": values / scale})
    frame["sign"] = np.where(frame["value"] >= 0, "+", "-")
    sns.barplot(
        data=frame,
        x="feature",
        y="value",
        hue="sign",
        palette={"+": POSITIVE, "-": NEGATIVE},
        legend=False,
        ax=ax,
        width=0.8,
    )
    ax.set_ylim(-1.05, 1.05)
    ax.set_xticks(range(0, len(values), 5 * max(1, math.ceil(len(values) / 60))))  # at most 12 labels
    ax.tick_params(labelsize=7)
    ax.set_ylabel("")


def example_tokens(row: pd.Series) -> tuple[str, ...] | None:
    tokens = row.get("example_tokens")
    return tuple(tokens) if isinstance(tokens, (tuple, list)) else None


def wrap_tokens(tokens: tuple[str, ...], width: int) -> list[list[int]]:
    """Token indices per line, lines at most `width` characters (one space between words)."""
    lines: list[list[int]] = [[]]
    used = 0
    for i, token in enumerate(tokens):
        needed = len(token) + (1 if lines[-1] else 0)
        if lines[-1] and used + needed > width:
            lines.append([])
            used, needed = 0, len(token)
        lines[-1].append(i)
        used += needed
    return lines


TEXT_FIGURE_WIDTH_IN = 12.0
TEXT_FONT_PT = 9.0
MONOSPACE_CHAR_EM = 0.6  # advance of one monospace character, in font sizes
TEXT_LINE_CHARS = 130  # wrap width; the axes span AXES_CHARS, leaving room for the margins
AXES_CHARS = int(TEXT_FIGURE_WIDTH_IN * 72 / (MONOSPACE_CHAR_EM * TEXT_FONT_PT))


def _sentence(ax: plt.Axes, tokens: tuple[str, ...], values: np.ndarray) -> None:
    """The words in a monospace font (x in characters), each on a background of its
    attribution's colour, scaled to the map's largest |attribution| over the words."""
    scores = values[: len(tokens)]
    limit = float(np.abs(scores).max()) or 1.0
    cmap = plt.get_cmap(CMAP)
    lines = wrap_tokens(tokens, TEXT_LINE_CHARS)
    ax.set_xlim(0, AXES_CHARS)
    ax.set_ylim(len(lines), 0)
    ax.axis("off")
    for row, indices in enumerate(lines):
        column = 0
        for i in indices:
            shade = float(np.clip(scores[i] / limit, -1, 1))
            ax.text(
                column,
                row + 0.5,
                tokens[i],
                family="monospace",
                fontsize=TEXT_FONT_PT,
                va="center",
                ha="left",
                color="white" if abs(shade) > 0.6 else "black",
                bbox={"boxstyle": "square,pad=0.15", "facecolor": cmap(0.5 + 0.5 * shade), "edgecolor": "none"},
            )
            column += len(tokens[i]) + 1


def text_gallery_figure(
    workload: str, chosen: list[tuple[pd.Series, np.ndarray, tuple[str, ...]]], knobs: list[str], style: MethodStyle
) -> Rendered:
    """One row per method: the first example's sentence, words coloured by attribution."""
    name, title = f"gallery_{workload}", f"Attribution gallery: {workload}"
    caption = (
        "Each method's per-token attribution of the same sentence (the workload's first example); "
        "red = evidence for the target class, blue = against, each method scaled to its own largest "
        "|attribution|. Layer methods' embedding attributions are summed over the embedding. "
        "One config per method: plain fp32, smallest batch, most converged; knobs and median time beside it."
    )
    if random_weights(pd.DataFrame([row for row, _, _ in chosen])):
        title += " (random weights)"
        caption = RANDOM_NOTE + " " + caption
    heights = [len(wrap_tokens(tokens, TEXT_LINE_CHARS)) for _, _, tokens in chosen]
    theme()
    fig, axes = plt.subplots(
        len(chosen),
        1,
        figsize=(TEXT_FIGURE_WIDTH_IN, sum(0.3 * h + 0.5 for h in heights)),
        squeeze=False,
        gridspec_kw={"height_ratios": [h + 1.2 for h in heights]},
    )
    for ax, (row, values, tokens) in zip(axes[:, 0], chosen, strict=True):
        _sentence(ax, tokens, values)
        method = str(row["method"])
        label = f"{method}   ({_caption(row, knobs).replace(chr(10), ', ')})"
        ax.set_title(label, fontsize=9, loc="left", color=style.palette.get(method, "black"), fontweight="bold")
    fig.tight_layout()
    return Rendered(name, title, caption, fig)


def gallery_figure(workload: str, cells: pd.DataFrame, maps: dict, style: MethodStyle) -> Rendered:
    name = "gallery_" + re.sub(r"[^\w.-]+", "_", workload)  # plug-in names hold ':' and '/'; file names may not
    title = f"Attribution gallery: {workload}"
    knobs = knob_columns(cells)
    images = [(row, maps[(row["file"], row["cell_key"])]) for _, row in cells.iterrows()]
    words = [(row, m, example_tokens(row)) for row, m in images if m.ndim == 1 and example_tokens(row)]
    if words:
        return text_gallery_figure(workload, words, knobs, style)
    two_d = [(row, m) for row, m in images if m.ndim == 2]
    one_d = [(row, m) for row, m in images if m.ndim == 1]
    signal = series_input(maps, workload)
    if signal is not None:
        chosen, kind = one_d, "series"
    else:
        chosen, kind = (two_d, "image") if len(two_d) >= len(one_d) else (one_d, "bars")
    if not chosen:
        return Rendered(name, title, "", skipped=f"no 1-D or 2-D maps for {workload}")
    if kind == "series":
        caption = (
            "Series input: the first example's channels, each step coloured by the method's attribution there "
            "(channels summed; a layer's map stretched to the input's length); red = positive, blue = negative "
            "evidence for the target, each map scaled to its own 99.5th percentile of |attribution|. "
            "One config per method; knobs and median time under each."
        )
    elif kind == "image":
        caption = (
            "Each method's attribution of the same input (the workload's first example), channels summed "
            "(a volume: its middle depth slice); "
            "red = positive, blue = negative evidence for the target, each map scaled to its own 99.5th "
            "percentile of |attribution|. Layer methods show their layer's resolution. One config per method: "
            "plain fp32, smallest batch, most converged; knobs and median time under each."
        )
    else:
        caption = (
            "Tabular input: each method's signed attribution per feature for the same example (the first), "
            "scaled to the method's largest |attribution|; red = positive, blue = negative. "
            "One config per method; knobs and median time under each."
        )
    skipped = len(images) - len(chosen)
    if skipped:
        caption += f" {skipped} map(s) of another shape are not shown."
    stored = input_image(maps, workload) if kind == "image" else None
    mask = stored[1] if stored is not None else None
    if stored is not None:
        caption += " First panel: the input the maps are of."
    elif kind == "image":
        caption += " This results file stored no input image (it predates that), so no input panel is shown."
    if mask is not None:
        caption += (
            " The class-defining object's ground-truth mask is outlined on it and on every map of the input's "
            "size, and the cell's relevance mass accuracy (share of positive attribution inside the mask, mean "
            "over the cell's examples) is given under each map."
        )
    random = random_weights(cells)
    if random:
        title += " (random weights)"
        caption = RANDOM_NOTE + " " + caption
    panels = len(chosen) + (stored is not None)
    columns = min(COLUMNS if kind == "image" else 4, panels)
    rows = math.ceil(panels / columns)
    width, height = (2.5, 3.6) if kind == "image" else (3.6, 3.1)
    theme()
    # constrained layout sizes each row to its tallest caption, so a caption never meets the next title
    fig, axes = plt.subplots(
        rows, columns, figsize=(width * columns, height * rows), squeeze=False, layout="constrained"
    )
    if random:
        fig.suptitle(f"{workload}: {RANDOM_NOTE}", fontsize=10.5, color="crimson", fontweight="bold")
    flat = list(axes.flat)
    if stored is not None:
        _input_panel(flat.pop(0), *stored)
    for ax, (row, values) in zip(flat, chosen, strict=False):
        if kind == "series":
            _series(ax, signal, values)
        elif kind == "image":
            _image(ax, values)
            _outline(ax, mask, values.shape)
        else:
            _bars(ax, values)
        method = str(row["method"])
        ax.set_title(method, fontsize=9.5, fontweight="bold")
        for spine in ax.spines.values():  # the method's colour, as in every other figure
            spine.set_edgecolor(style.palette.get(method, "black"))
            spine.set_linewidth(3)
        ax.set_xlabel(_caption(row, knobs), fontsize=7.5)
    for ax in flat[len(chosen) :]:
        ax.set_visible(False)
    return Rendered(name, title, caption, fig)


RANDOM_NOTE = "randomly initialised weights: these maps explain an untrained network."


def random_weights(cells: pd.DataFrame) -> bool:
    """Whether the gallery's cells ran on randomly initialised weights (the pretrained file was absent)."""
    return "weights" in cells.columns and (cells["weights"].astype(str) == "random").any()


def gallery_figures(df: pd.DataFrame, results_paths: list[Path], style: MethodStyle) -> list[Rendered]:
    """One gallery per workload that has maps; a skipped entry when no file has a maps archive."""
    maps = {(path.name, key): value for path in results_paths for key, value in load_maps(path).items()}
    if not maps:
        names = ", ".join(maps_path(p).name for p in results_paths)
        return [
            Rendered("gallery", "Attribution gallery", "", skipped=f"no maps archive next to the results ({names})")
        ]
    cells = pick_cells(df, maps)
    if cells.empty:
        return [Rendered("gallery", "Attribution gallery", "", skipped="no ok cell has a stored map")]
    return [gallery_figure(str(w), group, maps, style) for w, group in cells.groupby("workload", sort=True)]
