"""Approval criteria such as `total >= 10000 and total < 50000`.

A deliberately small language: comparisons of a numeric record attribute with a
number, joined by `and`. Small enough to evaluate in nanoseconds and to reason about:
each criterion is an interval, which is how unreachable rules are found at compile time.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

ATTRIBUTES = ("total",)
_OPS = (">=", "<=", "==", ">", "<")
_TERM = re.compile(r"^\s*([a-z_]+)\s*(>=|<=|==|>|<)\s*(-?\d+(?:\.\d+)?)\s*$")


class CriteriaError(ValueError):
    """A criterion that does not parse; the message says what was expected."""


@dataclass(frozen=True, slots=True)
class Interval:
    """The set of totals a criterion accepts: lo/hi with open or closed ends."""

    lo: float = -math.inf
    lo_closed: bool = False
    hi: float = math.inf
    hi_closed: bool = False

    def contains(self, x: float) -> bool:
        if x < self.lo or (x == self.lo and not self.lo_closed):
            return False
        return not (x > self.hi or (x == self.hi and not self.hi_closed))

    def empty(self) -> bool:
        return self.lo > self.hi or (self.lo == self.hi and not (self.lo_closed and self.hi_closed))

    def intersect(self, other: Interval) -> Interval:
        lo, lo_c = max((self.lo, not self.lo_closed), (other.lo, not other.lo_closed))
        hi, hi_c = min((self.hi, self.hi_closed), (other.hi, other.hi_closed))
        return Interval(lo, not lo_c, hi, hi_c)


@dataclass(frozen=True, slots=True)
class Criteria:
    """A parsed criterion; `text` is kept verbatim for reports and compiled output."""

    text: str
    interval: Interval

    def matches(self, total: float | None) -> bool:
        return total is not None and self.interval.contains(total)


def parse(text: str) -> Criteria:
    """Parse `total OP number [and total OP number ...]`."""
    interval = Interval()
    for term in re.split(r"\s+and\s+", text.strip()):
        m = _TERM.match(term)
        if not m:
            raise CriteriaError(
                f"cannot read criterion '{term.strip()}'; expected '<attribute> <op> <number>'"
                f" with op one of {' '.join(_OPS)}, joined by 'and'"
            )
        attr, op, num = m.group(1), m.group(2), float(m.group(3))
        if attr not in ATTRIBUTES:
            raise CriteriaError(f"unknown attribute '{attr}'; expected one of: {', '.join(ATTRIBUTES)}")
        term_iv = {
            ">=": Interval(lo=num, lo_closed=True),
            ">": Interval(lo=num),
            "<=": Interval(hi=num, hi_closed=True),
            "<": Interval(hi=num),
            "==": Interval(num, True, num, True),
        }[op]
        interval = interval.intersect(term_iv)
    return Criteria(" ".join(text.split()), interval)


def covered(target: Interval, earlier: list[Interval]) -> bool:
    """Whether every value of `target` is already accepted by some earlier interval."""
    if target.empty():
        return True
    # Walk from the target's low end, extending coverage with earlier intervals.
    lo, lo_closed = target.lo, target.lo_closed
    remaining = sorted(earlier, key=lambda i: (i.lo, not i.lo_closed))
    progress = True
    while progress:
        progress = False
        for iv in remaining:
            starts_ok = iv.lo < lo or (iv.lo == lo and (iv.lo_closed or not lo_closed))
            ends_beyond = iv.hi > lo or (iv.hi == lo and iv.hi_closed and lo_closed)
            if starts_ok and ends_beyond:
                if iv.hi > target.hi or (iv.hi == target.hi and (iv.hi_closed or not target.hi_closed)):
                    return True
                # Uncovered values now start just past iv's end.
                new = (iv.hi, 1 if iv.hi_closed else 0)
                if new > (lo, 0 if lo_closed else 1):
                    lo, lo_closed = iv.hi, not iv.hi_closed
                    progress = True
    return False
