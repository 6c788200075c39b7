"""The benchmark suite (pytest-benchmark), its presets, and the launchers that run it."""

from pathlib import Path

PRESET_DIR = Path(__file__).resolve().parent / "presets"
