"""The host facts of the benchmarks (``python bench/host.py`` prints the line): :mod:`numaccel.benchmarks.host`."""
from numaccel.benchmarks.host import *  # noqa: F403
from numaccel.benchmarks.host import line

if __name__ == "__main__":
    print(line())
