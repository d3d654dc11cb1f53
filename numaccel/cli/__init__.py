"""The ``numaccel`` command (also ``python -m numaccel``): the end-to-end compression demo.

``numaccel demo`` (the default command) prints the demo's tables; ``--out DIR`` also writes them, and a
plot, into ``DIR`` (and nowhere else). The demo itself is :func:`numaccel.cli.demo.run`.
"""

from __future__ import annotations

import argparse
import sys

__all__ = ["main"]


def main(argv=None) -> int:
    """Entry point of the ``numaccel`` command."""
    parser = argparse.ArgumentParser(prog="numaccel", description=__doc__.split("\n\n")[0].replace("``", ""))
    sub = parser.add_subparsers(dest="command")
    p = sub.add_parser("demo", help="compress a wide MLP and a digits classifier; print the tables (default)")
    p.add_argument("--fast", action="store_true", help="small models, one seed, one timing round (seconds)")
    p.add_argument("--seeds", type=int, nargs="+", help="seeds for the digits part (default 0 1 2)")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="write the tables (Markdown) and the plot (PNG) into DIR; without it nothing is written")
    p.add_argument("--no-plot", action="store_true", help="do not draw the PNG plot")
    p.add_argument("--only", choices=("wide", "digits"), help="run one part only")
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help")):
        argv = ["demo", *argv]  # the demo is the default command: `numaccel --fast` is `numaccel demo --fast`
    args = parser.parse_args(argv)
    from . import demo  # imported only to run it: `numaccel --help` stays light

    demo.run(fast=args.fast, seeds=args.seeds, out=args.out, plot=not args.no_plot,
             wide=args.only != "digits", digits=args.only != "wide")
    return 0
