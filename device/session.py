"""A slide session's running differential count, its flags, and when it has counted enough."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from edgehemo.classes import attention_reason, is_white_cell
from edgehemo.ood import UNFAMILIAR, session_looks_unfamiliar, unfamiliar_warning

LOW_CONFIDENCE = "low_confidence"


@dataclass
class SlideSession:
    classes: tuple[str, ...]
    target_count: int | None = None
    low_confidence: float = 0.6
    counts: Counter[str] = field(default_factory=Counter)
    flagged: Counter[str] = field(default_factory=Counter)

    def add(self, class_name: str, confidence: float, *, unfamiliar: bool = False
            ) -> tuple[str, ...]:
        """Count one new cell; returns its flags (why a screener should look at it)."""
        self.counts[class_name] += 1
        flags = []
        if attention_reason(class_name):
            flags.append("attention")
        if confidence < self.low_confidence:
            flags.append(LOW_CONFIDENCE)
        if unfamiliar:
            flags.append(UNFAMILIAR)
        for flag in flags:
            self.flagged[flag] += 1
        return tuple(flags)

    @property
    def white_cells(self) -> int:
        return sum(n for name, n in self.counts.items() if is_white_cell(name))

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def done(self) -> bool:
        return self.target_count is not None and self.white_cells >= self.target_count

    def differential(self) -> list[tuple[str, int, float]]:
        """(class, count, percent) in the model's class order; percent of white cells for white
        cells, per 100 white cells for the others (as a manual differential reports them)."""
        base = self.white_cells or 1
        return [(name, self.counts.get(name, 0), 100.0 * self.counts.get(name, 0) / base)
                for name in self.classes]

    @property
    def looks_unfamiliar(self) -> bool:
        """Most cells look unlike the training images: a new microscope, camera or stain."""
        return session_looks_unfamiliar(self.total, self.flagged.get(UNFAMILIAR, 0))

    def attention_summary(self) -> list[str]:
        lines = []
        if self.looks_unfamiliar:
            lines.append(unfamiliar_warning(self.total, self.flagged[UNFAMILIAR]))
        for name in self.classes:
            reason = attention_reason(name)
            if reason and self.counts.get(name):
                lines.append(f"{self.counts[name]} cell(s) classified {reason}")
        if self.flagged.get(LOW_CONFIDENCE):
            lines.append(f"{self.flagged[LOW_CONFIDENCE]} low-confidence cell(s) to review "
                         f"(confidence < {self.low_confidence:.0%})")
        return lines
