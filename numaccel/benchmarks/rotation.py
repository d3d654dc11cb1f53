"""Weight rotation shared by the suites.

Each call reads the next of several copies of a weight, so that together they exceed the last-level cache
and every call meets "cold" weights, as a real model's layers do.
"""

from __future__ import annotations

import time

__all__ = ["Rotation", "call_seconds"]


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


def call_seconds(fn, cap: float = float("inf"), calls: int = 3) -> float:
    """Return the median time of ``calls`` calls of ``fn`` (seconds), to size a benchmark's rounds.

    A single call on a shared machine can run ten times slow and would cut the rounds as much; the median
    of three does not follow one such call. Stops early (returning that call's time) once a call takes
    more than ``cap`` seconds.

    Examples
    --------
    >>> from numaccel.benchmarks.rotation import call_seconds
    >>> 0 <= call_seconds(lambda: sum(range(100))) < 1
    True
    """
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        if times[-1] > cap:
            return times[-1]
    return sorted(times)[len(times) // 2]
