"""Seeds inside the search: whether a design holds the target is decided over several
seeds, and a seed is spent only while it can still change that verdict (Ray Tune's
`Repeater`, made lazy).

The rule (docs/RESULTS.md): a design holds when, over `seeds` seeds, its mean
final-epoch accuracy is at least the target and at least half of the seeds reach it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Verdict:
    """A design's accuracies so far (one per seed, in the order run) against its target."""

    accs: tuple[float, ...]
    target: float
    seeds: int  # how many seeds the verdict is over

    @property
    def mean(self) -> float:
        return sum(self.accs) / len(self.accs)

    @property
    def hits(self) -> int:
        return sum(a >= self.target for a in self.accs)

    @property
    def needed(self) -> int:
        """Seeds that must reach the target: at least half of them."""
        return math.ceil(self.seeds / 2)

    @property
    def holds(self) -> bool:
        return (
            len(self.accs) >= self.seeds and self.mean >= self.target and self.hits >= self.needed
        )

    def worth_another(self, margin: float) -> bool:
        """Spend one more seed? Only while the verdict is open and the design is near the
        target: its mean within `margin` points of it, and enough seeds left to reach it."""
        left = self.seeds - len(self.accs)
        return left > 0 and self.hits + left >= self.needed and self.mean >= self.target - margin

    def shortfall(self) -> float:
        """An Optuna constraint value: <= 0 exactly when the design holds. A design whose
        mean clears the target but fails the count, or whose seeds were cut short,
        scores a token 0.001 points."""
        gap = self.target - self.mean
        return gap if self.holds or gap > 0 else 0.001


def verdict(accs: Sequence[float], target: float, seeds: int) -> Verdict:
    return Verdict(tuple(float(a) for a in accs), float(target), int(seeds))
