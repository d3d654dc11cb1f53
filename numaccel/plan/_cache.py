"""What a planner derives from a weight (row partitions, packed copies), made once per weight.

It is freed with the weight: the formats stay plain data.
"""

from __future__ import annotations

import threading
import weakref


class PerWeight:
    """``cache(w)`` is ``make(w)``, computed on the first call for each weight ``w`` and kept while ``w`` lives."""

    def __init__(self, make):
        self._make = make
        self._held: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    def __call__(self, w):
        v = self._held.get(w)
        if v is None:
            with self._lock:
                v = self._held.get(w)
                if v is None:
                    v = self._held[w] = self._make(w)
        return v

    def __contains__(self, w) -> bool:
        return w in self._held
