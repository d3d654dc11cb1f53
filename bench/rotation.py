"""Weight rotation shared by the suites: each call reads the next of several copies of a weight, so that
together they exceed the last-level cache and every call meets "cold" weights, as a real model's layers do."""

from __future__ import annotations


class Rotation:
    """Cycles through sequences of weight copies; ``last`` returns the copy the latest ``pick`` chose."""

    def __init__(self) -> None:
        self.calls = 0

    def pick(self, seq):
        self.calls += 1
        return seq[self.calls % len(seq)]

    def last(self, seq):
        return seq[self.calls % len(seq)]
