"""The ``numaccel`` command (also ``python -m numaccel``): the compression demo, ``optimize`` and ``bench``.

``numaccel demo`` (the default command) prints the demo's tables; ``--out DIR`` also writes them, and a
plot, into ``DIR`` (and nowhere else). The demo itself is :func:`numaccel.cli.demo.run`.

``numaccel optimize MODEL DATA --out OUT`` runs :func:`numaccel.optimize` on a saved model
(:func:`numaccel.save`) with the validation data in ``DATA`` (an ``.npz`` file with arrays ``X`` and ``y``,
read without pickle), prints the report and saves the optimized model to ``OUT``.

``numaccel bench`` times the headline cases on this host (CSR 90 %, int8 weight-only and W8A8, batch 1 and
64, 4096 x 4096, cold weights) against dense NumPy and the installed anchors, with the host's roofline, and
prints one Markdown table; ``--out DIR`` also writes it, the raw JSON files and a plot. It runs the
pytest-benchmark suite ``numaccel/benchmarks/suite_headline.py`` once per library and round, each in its
own process (:func:`numaccel.benchmarks.command.run`), and needs ``pip install "numaccel[bench]"``.
"""

from __future__ import annotations

import argparse
import os
import sys

__all__ = ["main"]

# the libraries ``numaccel bench --impls`` takes: numaccel.benchmarks.suite_headline.LIBRARIES, written out
# here so that building the parser imports nothing
_BENCH_LIBRARIES = ("numaccel", "numpy", "scipy", "mkl", "torch", "cuda")


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
    o = sub.add_parser("optimize", help="choose each layer's format of a saved model from measured speed and accuracy")
    o.add_argument("model", help="a model saved with numaccel.save (.safetensors or .npz)")
    o.add_argument("data", help="validation data: an .npz file with arrays X (n, K) float and y (n,) class ids")
    o.add_argument("--out", required=True, help="where to save the optimized model")
    o.add_argument("--max-accuracy-drop", type=float, default=0.01, help="budget, as a fraction (default 0.01)")
    o.add_argument("--batch-size", type=int, default=1, help="batch size to optimize latency for (default 1)")
    o.add_argument("--objective", choices=("latency", "bytes"), default="latency")
    o.add_argument("--train", default=None, metavar="NPZ", help="training data (X, y) for fine-tuning pruned layers")
    o.add_argument("--finetune-epochs", type=int, default=0, help="epochs of fine-tuning per step (needs --train)")
    o.add_argument("--repeats", type=int, default=7, help="interleaved timing rounds (default 7)")
    o.add_argument("--seed", type=int, default=0)
    o.add_argument("--report", default=None, metavar="MD", help="also write the report (Markdown) here")
    o.add_argument("--plot", default=None, metavar="PNG", help="draw accuracy against latency here")
    libraries = _BENCH_LIBRARIES
    b = sub.add_parser("bench", help="time the headline cases here against NumPy and the installed anchors, "
                                     "with this host's roofline")
    b.add_argument("--out", default=None, metavar="DIR",
                   help="write the table (bench.md), the plot (bench.png) and the raw JSON files (raw/) into DIR")
    b.add_argument("--rounds", type=int, default=3, help="interleaved rounds, one process per library each (default 3)")
    b.add_argument("--impls", default=None, metavar="LIST",
                   help=f"comma-separated libraries to time, of {','.join(libraries)} (default: all installed)")
    b.add_argument("--shape", default="4096", metavar="N[xK]", help="weight shape (default 4096: 4096 x 4096)")
    b.add_argument("--weights", choices=("cold", "hot"), default="cold",
                   help="cold: copies rotated through more than twice the last-level cache (default); hot: one copy")
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help")):
        argv = ["demo", *argv]  # the demo is the default command: `numaccel --fast` is `numaccel demo --fast`
    args = parser.parse_args(argv)
    if args.command == "optimize":
        return _optimize(args)
    if args.command == "bench":
        return _bench(args, b, libraries)
    from . import demo  # imported only to run it: `numaccel --help` stays light

    demo.run(fast=args.fast, seeds=args.seeds, out=args.out, plot=not args.no_plot,
             wide=args.only != "digits", digits=args.only != "wide")
    return 0


def _read_xy(path: str, what: str):
    """``X`` and ``y`` from an ``.npz`` file, read without pickle; a clear error for anything else."""
    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as z:
            if "X" not in z.files or "y" not in z.files:
                raise ValueError(f"{path}: {what} must hold arrays 'X' and 'y', found {sorted(z.files)}")
            return z["X"], z["y"]
    except (OSError, EOFError) as exc:
        raise ValueError(f"{path}: cannot read {what} as .npz ({exc})") from None


def _optimize(args) -> int:
    from ..io import load, save
    from ..optimization import optimize

    try:
        for what, path in (("--out", args.out), ("--report", args.report)):  # before the search, not after
            folder = os.path.dirname(os.path.abspath(path)) if path is not None else None
            if folder is not None and not (os.path.isdir(folder) and os.access(folder, os.W_OK)):
                raise ValueError(f"{what} {path}: the folder {folder} does not exist or is not writable")
        model = load(args.model)
        data = _read_xy(args.data, "the validation data")
        train_data = None if args.train is None else _read_xy(args.train, "the training data")
        opt = optimize(model, data, max_accuracy_drop=args.max_accuracy_drop, batch_size=args.batch_size,
                       objective=args.objective, train_data=train_data, finetune_epochs=args.finetune_epochs,
                       repeats=args.repeats, seed=args.seed, progress=True, plot=args.plot)
    except (ValueError, TypeError, OSError) as exc:  # OSError: a model file that cannot be read
        print(f"numaccel optimize: {exc}", file=sys.stderr)
        return 2
    save(args.out, opt)
    text = opt.report.table()
    print(text)
    if args.report is not None:
        with open(args.report, "w") as f:
            f.write(text)
    print(f"saved {args.out}")
    return 0


def _bench(args, parser, libraries) -> int:
    if args.rounds < 1:
        parser.error(f"--rounds must be >= 1, got {args.rounds}")
    impls = None
    if args.impls is not None:
        impls = [x.strip() for x in args.impls.split(",") if x.strip()]
        unknown = [x for x in impls if x not in libraries]
        if unknown or not impls:
            parser.error(f"--impls must name some of {','.join(libraries)}, got {args.impls!r}")
    from ..benchmarks.command import missing_requirements  # imported only to run it: `numaccel --help` stays light

    missing = missing_requirements()
    if missing:
        print(f"numaccel bench needs {' and '.join(missing)}: pip install \"numaccel[bench]\"", file=sys.stderr)
        return 2
    from ..benchmarks.command import run

    try:
        return run(out=args.out, rounds=args.rounds, impls=impls, shape=args.shape, weights=args.weights)
    except ValueError as exc:
        print(f"numaccel bench: {exc}", file=sys.stderr)
        return 2
