"""Figures for numaccel.optimize: the wide MLP and the digits models, every target of the optimizer.

    python bench/optimize_figures.py [--part wide|digits] [--seeds 0 1 2] [--out bench/results]

Wide MLP [1024, 4096, 4096, 10] (random weights, ReLU): the validation and test "labels" are the dense
fp32 model's own predictions on Gaussian inputs, so accuracy is agreement with the fp32 model; optimize at
batch 1 with a one-point budget, then time the returned model, the dense model and every uniform model
within the budget as whole models, interleaved (one process, medians of rounds, spread beside them).

Digits (scikit-learn load_digits): per seed, a stratified 60/20/20 split into training, validation and
test rows; the demo's teacher trained on the training rows; ``optimize`` at batch 1 (objective latency,
one-point budget) and with ``objective="bytes"`` (fine-tuning on the training rows); test accuracy of
each against the teacher's, and the latency check against dense and the uniform models.

Writes ``optimize.md`` (and ``optimize_digits.png``, the optimizer's own plot for seed 0) into ``--out``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np

import numaccel as na
from numaccel import _config
from numaccel.cli.demo import DIGITS, _split, environment

ROUNDS = 9


def _time_whole(models: dict, x: np.ndarray, rounds: int = ROUNDS) -> dict:
    """Per model: (median, lowest, highest) seconds per forward call, interleaved rounds with pauses."""
    from numaccel.cli.demo import time_models

    s = time_models(models, x, rounds=rounds, target=0.02, pause=0.25, desc="whole models")
    return {n: (statistics.median(v), min(v), max(v)) for n, v in s.items()}


def _ms(t) -> str:
    med, lo, hi = t
    return f"{med * 1e3:.3f} ms [{lo * 1e3:.3f}-{hi * 1e3:.3f}]"


def _uniform_within(net, rep):
    """The uniform models of the report that kept the budget, rebuilt (their choices are in the names)."""
    out = {}
    for m in rep.models:
        if m["within_budget"] and m["name"].startswith("uniform"):
            kind = m["name"].split(" ", 1)[1]
            out[m["name"]] = kind
    return out


def _rebuild(net, kind: str, train=None, finetune=None):
    """A uniform model of ``kind`` (as named in the report), built the way the optimizer builds it."""
    if kind.endswith("-w8a8"):
        m = _rebuild(net, kind[:-5])
        return type(m)([na.nn.Linear(layer.weight, layer.bias, activation_quant="int8")
                        if isinstance(layer, na.nn.Linear) else layer for layer in m.layers])
    if kind == "int8":
        return na.compress(net, int8=True, format="int8")
    if kind.startswith("int8-g"):
        return na.compress(net, int8=True, format="int8", group_size=int(kind[6:]))
    if kind.startswith("csr-int8-"):
        return na.compress(net, sparsity=float(kind[9:-1]) / 100, int8=True, format="csr-int8")
    if kind.startswith("csr-"):
        return na.compress(net, sparsity=float(kind[4:-1]) / 100, format="csr")
    if kind == "dense":
        return net
    raise ValueError(kind)


def wide(out_lines: list) -> None:
    sizes = [1024, 4096, 4096, 10]
    net = na.nn.MLP.init(sizes, seed=0)
    rng = np.random.default_rng(0)
    Xv = rng.standard_normal((2000, sizes[0])).astype(np.float32)
    Xt = rng.standard_normal((2000, sizes[0])).astype(np.float32)
    yv, yt = net.predict(Xv), net.predict(Xt)
    t0 = time.perf_counter()
    opt = na.optimize(net, (Xv, yv), max_accuracy_drop=0.01, batch_size=1, progress=True)
    took = time.perf_counter() - t0
    rep = opt.report
    models = {"dense fp32 (BLAS)": net, "optimized": opt}
    for name, kind in _uniform_within(net, rep).items():
        models[name] = _rebuild(net, kind)
    x = rng.standard_normal((1, sizes[0])).astype(np.float32)
    t = _time_whole(models, x)
    agree = {n: float((m.predict(Xt) == yt).mean()) for n, m in models.items()}
    out_lines += [f"## Wide MLP {sizes}, batch 1, budget 1 point of agreement with fp32 (optimize took {took:.0f} s)",
                  "", rep.table(), "",
                  "Whole models timed again, interleaved (9 rounds, median [lowest-highest]), test agreement "
                  "with the fp32 model on 2000 fresh Gaussian inputs:", "",
                  "| model | layers | latency, batch 1 | vs dense | vs optimized | test agreement % | bytes |",
                  "|---|---|---|---|---|---|---|"]
    for n, m in models.items():
        fmts = ", ".join(f"{r['format']}{' W8A8' if r['activation_quant'] else ''}" for r in m.summary())
        out_lines.append(f"| {n} | {fmts} | {_ms(t[n])} | {t['dense fp32 (BLAS)'][0] / t[n][0]:.2f}x | "
                         f"{t[n][0] / t['optimized'][0]:.2f}x | {100 * agree[n]:.2f} | {m.nbytes:,} |")
    out_lines.append("")


def digits(out_lines: list, seeds, out_dir) -> None:
    from sklearn.datasets import load_digits

    from numaccel.cli.demo import time_models

    d = load_digits()
    X = (d.data / 16.0).astype(np.float32)
    y = d.target.astype(np.int64)
    cfg = DIGITS
    rows, lat_rows = [], []
    for seed in seeds:
        Xrest, yrest, Xte, yte = _split(X, y, seed)
        Xtr, ytr, Xva, yva = _split(Xrest, yrest, seed + 100)  # 60/20/20
        teacher = na.train(na.nn.MLP.init(cfg["teacher"], seed=seed), Xtr, ytr, epochs=cfg["epochs"],
                           lr=cfg["lr"], weight_decay=cfg["weight_decay"], seed=seed)

        def acc(m, Xte=Xte, yte=yte):
            return 100.0 * float((m.predict(Xte) == yte).mean())

        lat = na.optimize(teacher, (Xva, yva), max_accuracy_drop=0.01, batch_size=1, seed=seed,
                          plot=os.path.join(out_dir, "optimize_digits.png") if seed == seeds[0] else None)
        small = na.optimize(teacher, (Xva, yva), max_accuracy_drop=0.01, objective="bytes", seed=seed,
                            train_data=(Xtr, ytr), finetune_epochs=cfg["finetune_epochs"], steps=cfg["steps"],
                            lr=cfg["finetune_lr"])
        rows.append([seed, acc(teacher), acc(lat), acc(small), teacher.nbytes / small.nbytes,
                     "; ".join(r["choice"] for r in lat.report), "; ".join(r["choice"] for r in small.report)])
        models = {"dense": teacher, "optimized (latency)": lat}
        for name, kind in _uniform_within(teacher, lat.report).items():
            models[name] = _rebuild(teacher, kind)
        s = time_models(models, Xte[:1], rounds=ROUNDS, target=0.02, pause=0.25, desc="digits")
        t = {n: (statistics.median(v), min(v), max(v)) for n, v in s.items()}
        fastest_uniform = min((n for n in t if n.startswith("uniform")), key=lambda n: t[n][0], default=None)
        lat_rows.append([seed, t["dense"], t["optimized (latency)"], fastest_uniform,
                         t[fastest_uniform] if fastest_uniform else None])
    out_lines += ["## Digits (load_digits; 60/20/20 train/validation/test per seed; the demo's teacher "
                  f"{cfg['teacher']})", "",
                  "Budget 1 point on the validation rows; accuracy on the unseen test rows:", "",
                  "| seed | teacher test % | optimized (latency, batch 1) test % | drop | optimized (bytes, "
                  "fine-tuned) test % | drop | smaller | latency choice | bytes choice |",
                  "|---|---|---|---|---|---|---|---|---|"]
    for seed, a0, a1, a2, ratio, c1, c2 in rows:
        out_lines.append(f"| {seed} | {a0:.2f} | {a1:.2f} | {a1 - a0:+.2f} | {a2:.2f} | {a2 - a0:+.2f} | "
                         f"{ratio:.1f}x | {c1} | {c2} |")
    out_lines += ["", "Whole models at batch 1, interleaved (9 rounds, median [lowest-highest]):", "",
                  "| seed | dense | optimized (latency) | vs dense | fastest uniform within budget | its latency | "
                  "optimized vs it |", "|---|---|---|---|---|---|---|"]
    for seed, td, to, fu, tu in lat_rows:
        rel = f"{tu[0] / to[0]:.2f}x" if tu else "-"
        out_lines.append(f"| {seed} | {_ms(td)} | {_ms(to)} | {td[0] / to[0]:.2f}x | {fu or '-'} | "
                         f"{_ms(tu) if tu else '-'} | {rel} |")
    out_lines.append("")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--part", choices=("wide", "digits"))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--out", default="bench/results")
    args = p.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    lines = ["# numaccel.optimize: targets (`python bench/optimize_figures.py`)", "",
             f"Host: {_config.cpu_model()}; {environment()}", ""]
    if args.part in (None, "wide"):
        wide(lines)
    if args.part in (None, "digits"):
        digits(lines, args.seeds, args.out)
    text = "\n".join(lines)
    name = "optimize.md" if args.part is None else f"optimize_{args.part}.md"
    with open(os.path.join(args.out, name), "w") as f:
        f.write(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
