"""Weight rotation shared by the suites.

Each call reads the next of several copies of a weight, so that together they exceed the last-level cache
and every call meets "cold" weights, as a real model's layers do.
"""

from __future__ import annotations

__all__ = ["Rotation"]


class Rotation:
    """Cycles through sequences of weight copies; ``last`` returns the copy the latest ``pick`` chose.

    Examples
    --------
    >>> from numaccel.benchmarks.rotation import Rotation
    >>> r = Rotation()
    >>> [r.pick("abc") for _ in range(4)], r.last("abc")
    (['b', 'c', 'a', 'b'], 'b')
    """

    def __init__(self) -> None:
        self.calls = 0

    def pick(self, seq):
        """Return the next element of ``seq`` (cyclically) and count the call."""
        self.calls += 1
        return seq[self.calls % len(seq)]

    def last(self, seq):
        """Return the element of ``seq`` the latest :meth:`pick` returned."""
        return seq[self.calls % len(seq)]
