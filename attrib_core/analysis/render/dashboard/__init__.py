"""`attrib-bench dashboard FOLDER... [-o DIR] [--reference MACHINE]`: a static, offline results site.

Reads every results file under the folders (recursively; see store.py), and writes five pages
that share a nav bar, with their PNGs beside them: index.html (each machine's newest run),
hardware.html (machines side by side, speedups by the one timing rule), history.html (cells over
commits, with steps), tradeoff.html (the report's speed-fidelity and sanity figures) and
leaderboard.html (methods per workload). Nothing is fetched from anywhere: the site opens from
file:// and can be copied as a folder. No torch.
"""

from __future__ import annotations

from attrib_core.analysis.render.dashboard.command import build, main

__all__ = ["build", "main"]
