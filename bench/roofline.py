"""The host's ceilings (``python bench/roofline.py [--quick] [--json]``): :mod:`numaccel.benchmarks.roofline`."""
from numaccel.benchmarks.roofline import *  # noqa: F403
from numaccel.benchmarks.roofline import main

if __name__ == "__main__":
    raise SystemExit(main())
