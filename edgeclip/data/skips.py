"""Skipped data items, counted by reason: every reader reports them instead of crashing on a bad item."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class SkipCounter:
    """Counts skipped items by reason; reported at the end of a run."""
    counts: Counter = field(default_factory=Counter)

    def add(self, reason: str) -> None:
        self.counts[reason] += 1

    @property
    def total(self) -> int:
        return sum(self.counts.values())
