"""Figures shared by the sweep report and the compare command.

matplotlib only (no torch), so `compare` starts fast.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

Point = tuple[float, float]  # (parameters, accuracy %)
T = TypeVar("T")


def pareto_front(items: Sequence[T], key: Callable[[T], Point] = lambda p: p) -> list[T]:
    """The items no other item beats on both size (fewer) and accuracy (higher), smallest
    first; `key` gives an item's (size, accuracy)."""
    front: list[T] = []
    for item in sorted(items, key=lambda i: (key(i)[0], -key(i)[1])):
        if not front or key(item)[1] > key(front[-1])[1]:
            front.append(item)
    return front


def new_axes(figsize: tuple[float, float] = (8, 5)) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on a training box
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=figsize, layout="constrained")


def finish(
    fig: Any, ax: Any, target: float | None, path: Path, legend_outside: bool = False
) -> None:
    """Target line, grid and legend; save and free the figure."""
    import matplotlib.pyplot as plt

    if target is not None:
        ax.axhline(target, color="tab:red", ls="--", lw=1, label=f"target {target:g}%")
        low, high = ax.get_ylim()  # keep the line off the frame: axhline adds no margin
        ax.set_ylim(low, max(high, target + 0.05 * (high - low)))
    ax.grid(alpha=0.3, which="both")
    if legend_outside:  # the constrained layout makes room for it beside the axes
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    else:
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
    for i, (text, point) in enumerate(labels):
        # Staggered: neighbours on the front are often close in size.
        ax.annotate(text, point, (6, (-12, 4, -24)[i % 3]), textcoords="offset points")
    ax.set(xscale="log", xlabel="parameters (log scale)", ylabel=ylabel, title=title)
    # Readable sizes (5,000 rather than 5x10^3), also when the runs span less than a decade.
    ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.margins(x=0.15)  # room for the labels of the outermost runs
    ys = [y for points in groups.values() for _, y in points]
    if ys:
        zoom_accuracy(ax, accuracy_floor(ys), ys, target)
    finish(fig, ax, target, path)


@dataclass
class Curve:
    """One run's accuracy per epoch, and how to draw it."""

    points: Sequence[tuple[int, float]]  # (epoch, accuracy %)
    kind: str  # a key of CURVE_STYLES
    label: str | None = None  # its own legend entry (a highlighted run); else its kind's
    cut: bool = False  # stopped before its planned epochs (pruned): its end is marked


# Highlighted runs get their own colour and legend entry; the rest are drawn
# by kind, so that 40 runs read as a few groups instead of 40 colours.
CURVE_STYLES: dict[str, dict[str, Any]] = {
    "highlight": {"lw": 1.6, "zorder": 3},
    "target met": {"color": "tab:green", "lw": 1.2, "alpha": 0.8, "zorder": 2},
    "below target": {"color": "tab:gray", "lw": 1.0, "alpha": 0.6},
    "pruned": {"color": "tab:red", "lw": 1.0, "alpha": 0.5, "ls": "--"},
    "other runs": {"color": "0.7", "lw": 0.8, "alpha": 0.7},
}


def accuracy_floor(finals: Sequence[float], ends: Sequence[float] = ()) -> float:
    """The bottom of an accuracy axis that shows where runs differ: a bit below the
    worst final accuracy (and the worst point where a pruned run stopped, `ends`),
    outliers aside (a run stuck at chance would flatten all the others into a band).
    Earlier epochs, and the outliers, leave through the bottom edge."""
    values = sorted([*finals, *ends])
    q1, q3 = values[len(values) // 4], values[(3 * len(values)) // 4]
    fence = q1 - 3 * max(q3 - q1, 0.5)  # Tukey's "far out", on at least half a point
    low, high = min(v for v in values if v >= fence), values[-1]
    # Room below the worst: the last epochs of the runs, and a run killed a little
    # short of the rest, stay in the picture.
    return max(0.0, low - max(0.5 * (high - low), 0.5))


def zoom_accuracy(
    ax: Any, floor: float, lasts: Sequence[float], target: float | None, best: float | None = None
) -> None:
    """The y-axis from `floor` to just above the best accuracy (or the target), and a
    note counting the runs whose last accuracy, `lasts`, is below it."""
    top = max(best if best is not None else max(lasts), target or 0.0)
    ax.set_ylim(floor, min(100.0, top + max(0.1 * (top - floor), 0.05)))
    below = [y for y in lasts if y < floor]
    if below:  # say so: a run that ends below the axis is not in the picture
        ax.text(
            0.99, 0.01, f"{len(below)} below the axis (lowest {min(below):.2f}%)",
            transform=ax.transAxes, ha="right", va="bottom", fontsize=8, color="0.3",
        )  # fmt: skip


def accuracy_curves(
    path: Path,
    curves: Sequence[Curve],
    target: float | None,
    title: str,
    ylabel: str = "test accuracy (%)",
    floor: float | None = None,
) -> None:
    """Accuracy per epoch, one line per run, the first on top; the y-axis from
    `floor` (default: accuracy_floor of the runs' last points) up to just above
    the best, the legend outside the axes so that it never covers a line."""
    fig, ax = new_axes((9, 5))
    labelled: set[str] = set()
    for i, curve in enumerate(curves):
        if not curve.points:
            continue
        style = dict(CURVE_STYLES[curve.kind])
        style["zorder"] = style.get("zorder", 1) + 1 - i / len(curves)  # the first on top
        kind_label = "pruned (x: where it stopped)" if curve.kind == "pruned" else curve.kind
        label = curve.label or (kind_label if curve.kind not in labelled else None)
        labelled.add(curve.kind)
        (line,) = ax.plot(*zip(*curve.points, strict=True), label=label, **style)
        if curve.cut:
            ax.plot(*curve.points[-1], marker="x", ms=6, color=line.get_color(), ls="none")
    if floor is None:
        lasts = [c.points[-1][1] for c in curves if c.points]
        floor = accuracy_floor(lasts) if lasts else 0.0
    zoom_accuracy(
        ax, floor, [c.points[-1][1] for c in curves if c.points], target,
        best=max((y for c in curves for _, y in c.points), default=100.0),
    )  # fmt: skip
    ax.set(xlabel="epoch", ylabel=ylabel, title=title)
    ax.xaxis.get_major_locator().set_params(integer=True)
    if any(c.cut and c.kind != "pruned" for c in curves):  # "pruned" says it already
        ax.plot([], [], marker="x", color="0.3", ls="none", label="stopped (pruned)")
    finish(fig, ax, target, path, legend_outside=True)
