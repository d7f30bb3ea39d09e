"""Figures shared by the sweep report and the compare command.

matplotlib only (no torch), so `compare` starts fast.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

Point = tuple[float, float]  # (parameters, accuracy %)


def pareto_front(points: Sequence[Point]) -> list[int]:
    """Indices of the points no other point beats on both size (fewer) and accuracy (higher),
    smallest first."""
    front: list[int] = []
    for i in sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1])):
        if not front or points[i][1] > points[front[-1]][1]:
            front.append(i)
    return front


def new_axes(figsize: tuple[float, float] = (8, 5)) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on a training box
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=figsize, layout="constrained")


def finish(fig: Any, ax: Any, target: float | None, path: Path) -> None:
    """Target line, grid and legend; save and free the figure."""
    import matplotlib.pyplot as plt

    if target is not None:
        ax.axhline(target, color="tab:red", ls="--", lw=1, label=f"target {target:g}%")
        low, high = ax.get_ylim()  # keep the line off the frame: axhline adds no margin
        ax.set_ylim(low, max(high, target + 0.05 * (high - low)))
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=100)
    plt.close(fig)  # pyplot keeps every figure alive until closed


# How each kind of point is drawn; a pruned or unfinished run's accuracy is not
# a final one, so it is set apart.
STYLES = {
    "target met": {"c": "tab:green", "s": 60, "zorder": 3},
    "below target": {"c": "tab:gray", "s": 30},
    "not completed": {"c": "tab:red", "marker": "x"},
}


def size_vs_accuracy(
    path: Path,
    groups: Mapping[str, Sequence[Point]],
    front: Sequence[Point],
    labels: Sequence[tuple[str, Point]],
    target: float | None,
    title: str,
    ylabel: str = "final test accuracy (%)",
) -> None:
    """Parameters (log) vs accuracy: one scatter per group (keys of STYLES), the Pareto
    front as a step line, text labels at given points, the target as a line."""
    from matplotlib.ticker import LogLocator, NullFormatter, StrMethodFormatter

    fig, ax = new_axes()
    for name, points in groups.items():
        if points:
            ax.scatter(*zip(*points, strict=True), label=name, **STYLES[name])
    if front:
        ax.plot(*zip(*front, strict=True), color="tab:blue", drawstyle="steps-post",
                label="Pareto front", zorder=2)  # fmt: skip
    for text, point in labels:
        ax.annotate(text, point, (6, -12), textcoords="offset points")
    ax.set(xscale="log", xlabel="parameters (log scale)", ylabel=ylabel, title=title)
    # Readable sizes (5,000 rather than 5x10^3), also when the runs span less than a decade.
    ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.margins(x=0.15, y=0.1)  # room for the labels of the outermost runs
    finish(fig, ax, target, path)
