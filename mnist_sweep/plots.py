"""Every figure the project draws: a run's curves, accuracy per epoch of many runs, the
Pareto front of size against accuracy, and the frame around Optuna's own plots.

The only module that uses matplotlib, and it imports it when a figure is drawn,
not before: `compare` starts fast, and nothing here needs torch. Callers turn
their records into `Curve`s and `Result`s and get a PNG file back.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
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


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on a training box
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> None:
    # PNG named explicitly: callers may write to a temporary name without the suffix.
    fig.savefig(path, dpi=100, format="png")
    _pyplot().close(fig)  # pyplot keeps every figure alive until closed


def _finish(
    fig: Any, ax: Any, target: float | None, path: Path, legend_outside: bool = False
) -> None:
    """Target line, grid and legend; save and free the figure."""
    if target is not None:
        ax.axhline(target, color="tab:red", ls="--", lw=1, label=f"target {target:g}%")
        low, high = ax.get_ylim()  # keep the line off the frame: axhline adds no margin
        ax.set_ylim(low, max(high, target + 0.05 * (high - low)))
    ax.grid(alpha=0.3, which="both")
    if legend_outside:  # the constrained layout makes room for it beside the axes
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    else:
        ax.legend(fontsize=8)
    _save(fig, path)


# --- the Pareto front ---------------------------------------------------------------

# How each kind of result is drawn; a pruned or unfinished run's accuracy is not
# a final one, so it is set apart and never joins the front.
STYLES = {
    "target met": {"c": "tab:green", "s": 60, "zorder": 3},
    "below target": {"c": "tab:gray", "s": 30},
    "not completed": {"c": "tab:red", "marker": "x"},
}
FINAL = ("target met", "below target")  # the kinds whose accuracy is a final one


@dataclass
class Result:
    """One run or trial on the size-accuracy plane."""

    params: int
    acc: float  # %
    kind: str  # a key of STYLES
    label: str | None = None  # written beside the point


def pareto(
    path: Path,
    results: Sequence[Result],
    target: float | None,
    title: str,
    ylabel: str = "final test accuracy (%)",
) -> None:
    """Parameters (log) vs accuracy: a scatter per kind, the Pareto front of the final
    results as a step line, the labels beside their points, the target as a line."""
    from matplotlib.ticker import LogLocator, NullFormatter, StrMethodFormatter

    fig, ax = _pyplot().subplots(figsize=(8, 5), layout="constrained")
    for kind, style in STYLES.items():
        points = [(r.params, r.acc) for r in results if r.kind == kind]
        if points:
            ax.scatter(*zip(*points, strict=True), label=kind, **style)
    front = pareto_front([r for r in results if r.kind in FINAL], key=lambda r: (r.params, r.acc))
    if front:
        ax.plot(
            [r.params for r in front],
            [r.acc for r in front],
            color="tab:blue",
            drawstyle="steps-post",
            label="Pareto front",
            zorder=2,
        )
    labelled = sorted((r for r in results if r.label), key=lambda r: (r.params, -r.acc))
    for i, r in enumerate(labelled):
        # Staggered: neighbours on the front are often close in size.
        ax.annotate(
            r.label, (r.params, r.acc), (6, (-12, 4, -24)[i % 3]), textcoords="offset points"
        )
    ax.set(xscale="log", xlabel="parameters (log scale)", ylabel=ylabel, title=title)
    # Readable sizes (5,000 rather than 5x10^3), also when the runs span less than a decade.
    ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.margins(x=0.15)  # room for the labels of the outermost runs
    ys = [r.acc for r in results]
    if ys:
        _zoom_accuracy(ax, accuracy_floor(ys), ys, target)
    _finish(fig, ax, target, path)


# --- curves -------------------------------------------------------------------------


@dataclass
class Curve:
    """One line of a curves figure: a run's accuracy (or loss) per epoch."""

    points: Sequence[tuple[int, float]]  # (epoch, value)
    kind: str  # a key of CURVE_STYLES
    label: str | None = None  # its own legend entry (a highlighted run); else its kind's
    cut: bool = False  # stopped before its planned epochs (pruned): its end is marked


# Highlighted runs get their own colour and legend entry; the rest are drawn
# by kind, so that 40 runs read as a few groups instead of 40 colours. A run's
# own splits (train, val, test) are few: each its own colour, every epoch a dot.
CURVE_STYLES: dict[str, dict[str, Any]] = {
    "highlight": {"lw": 1.6, "zorder": 3},
    "target met": {"color": "tab:green", "lw": 1.2, "alpha": 0.8, "zorder": 2},
    "below target": {"color": "tab:gray", "lw": 1.0, "alpha": 0.6},
    "pruned": {"color": "tab:red", "lw": 1.0, "alpha": 0.5, "ls": "--"},
    "other runs": {"color": "0.7", "lw": 0.8, "alpha": 0.7},
    "split": {"marker": "o"},
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


def _zoom_accuracy(
    ax: Any, floor: float, lasts: Sequence[float], target: float | None, best: float | None = None
) -> None:
    """The y-axis from `floor` to just above the best accuracy (or the target), and a
    note counting the runs whose last accuracy, `lasts`, is below it."""
    top = max(best if best is not None else max(lasts), target or 0.0)
    ax.set_ylim(floor, min(100.0, top + max(0.1 * (top - floor), 0.05)))
    below = [y for y in lasts if y < floor]
    if below:  # say so: a run that ends below the axis is not in the picture
        ax.text(
            0.99,
            0.01,
            f"{len(below)} below the axis (lowest {min(below):.2f}%)",
            transform=ax.transAxes,
            ha="right",
            va="bottom",
            fontsize=8,
            color="0.3",
        )


def _draw(ax: Any, curves: Sequence[Curve], first_on_top: bool) -> None:
    """The lines, a kind's legend entry once, a cross where a cut curve stopped."""
    labelled: set[str] = set()
    for i, curve in enumerate(curves):
        if not curve.points:
            continue
        style = dict(CURVE_STYLES[curve.kind])
        if first_on_top:
            style["zorder"] = style.get("zorder", 1) + 1 - i / len(curves)
        kind_label = "pruned (x: where it stopped)" if curve.kind == "pruned" else curve.kind
        label = curve.label or (kind_label if curve.kind not in labelled else None)
        labelled.add(curve.kind)
        (line,) = ax.plot(*zip(*curve.points, strict=True), label=label, **style)
        if curve.cut:
            ax.plot(*curve.points[-1], marker="x", ms=6, color=line.get_color(), ls="none")


def curves(
    path: Path,
    title: str,
    accuracy: Sequence[Curve],
    *,
    loss: Sequence[Curve] | None = None,
    ylabel: str = "test accuracy (%)",
    target: float | None = None,
    floor: float | None = None,
) -> None:
    """Accuracy per epoch, one line per curve.

    With `loss`, a run's own figure: its loss (log scale) and accuracy side by
    side, train vs test, every epoch in view. Without, many runs compared, the
    first on top: the y-axis from `floor` (default: accuracy_floor of the runs'
    last points) up to just above the best, the target as a line, the legend
    outside the axes so that it never covers a line.
    """
    plt = _pyplot()
    if loss is not None:
        fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4), layout="constrained")
        _draw(ax_loss, loss, first_on_top=False)
        _draw(ax_acc, accuracy, first_on_top=False)
        ax_loss.set(xlabel="epoch", ylabel="cross-entropy loss", yscale="log", title="loss")
        ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
        for ax in (ax_loss, ax_acc):
            ax.grid(alpha=0.3)
            ax.legend()
        fig.suptitle(title)
        _save(fig, path)
        return
    fig, ax = plt.subplots(figsize=(9, 5), layout="constrained")
    _draw(ax, accuracy, first_on_top=True)
    lasts = [c.points[-1][1] for c in accuracy if c.points]
    if floor is None:
        floor = accuracy_floor(lasts) if lasts else 0.0
    best = max((y for c in accuracy for _, y in c.points), default=100.0)
    _zoom_accuracy(ax, floor, lasts, target, best=best)
    ax.set(xlabel="epoch", ylabel=ylabel, title=title)
    ax.xaxis.get_major_locator().set_params(integer=True)
    if any(c.cut and c.kind != "pruned" for c in accuracy):  # "pruned" says it already
        ax.plot([], [], marker="x", color="0.3", ls="none", label="stopped (pruned)")
    _finish(fig, ax, target, path, legend_outside=True)


# --- Optuna's plots -----------------------------------------------------------------


@contextmanager
def optuna_figure(path: Path) -> Iterator[Any]:
    """Yields `optuna.visualization.matplotlib`; the figure its plot draws is saved to
    `path`. Their side effects stay inside: they are experimental (a warning per call,
    accepted knowingly here) and they set the global ggplot style, which would leak
    into every later figure of the process."""
    plt = _pyplot()
    import matplotlib
    from optuna.exceptions import ExperimentalWarning
    from optuna.visualization import matplotlib as optuna_plots

    before = set(plt.get_fignums())
    with warnings.catch_warnings(), matplotlib.rc_context():
        warnings.simplefilter("ignore", ExperimentalWarning)
        try:
            yield optuna_plots
            # "tight": Optuna puts some legends outside the axes.
            plt.gcf().savefig(path, dpi=100, bbox_inches="tight")
        finally:
            for number in set(plt.get_fignums()) - before:
                plt.close(number)
