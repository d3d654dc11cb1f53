"""The demo behind ``numaccel demo``: compressed models, their tables and a plot.

:func:`run` prints two tables; with ``out=DIR`` it also writes them, and a plot, into ``DIR`` (and nowhere
else):

* a wide MLP (synthetic weights, 4096 hidden units): bytes, batch-1 latency, batch-256 throughput and
  speed-up over dense NumPy for the dense, int8, pruned and pruned-int8 versions of the same model;
* scikit-learn's bundled digits: a teacher MLP trained here, its int8, pruned-and-fine-tuned, distilled and
  optimized (:func:`numaccel.optimize`, batch 1, one-point budget on validation rows) versions, with test
  accuracy per seed next to the same speed columns (needs ``numaccel[examples]``).
"""

from __future__ import annotations

import os
import statistics
import time

import numpy as np

from .. import _config
from ..training import _progress_bar

__all__ = ["run"]

# (name, compress() keywords) of the variants built from one dense model; each names the format it stores
# (dense int8 codes, float32 CSR, pruned-int8), so that a row holds what its name says.
VARIANTS = [
    ("int8", {"int8": True, "format": "int8"}),
    ("pruned 50%", {"sparsity": 0.5, "format": "csr"}),
    ("pruned 80%", {"sparsity": 0.8, "format": "csr"}),
    ("pruned 90%", {"sparsity": 0.9, "format": "csr"}),
    ("pruned 90% + int8", {"sparsity": 0.9, "int8": True, "format": "csr-int8"}),
]


def _say(msg: str) -> None:
    print(msg, flush=True)


# --------------------------------------------------------------------------------------------------
# timing

def _calls_per_sample(fn, x, target: float) -> int:
    fn(x)  # warm-up: compiles or loads kernels, touches the weights
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        fn(x)
        best = min(best, time.perf_counter() - t0)
    return max(1, min(10000, int(target / max(best, 1e-7))))


def time_models(models: dict, x: np.ndarray, *, rounds: int, target: float = 0.02, pause: float = 0.25,
                desc: str = "timing") -> dict:
    """Seconds per forward call of each model on ``x``: one sample per round, ``rounds`` samples each.

    The models are timed interleaved, one sample each per round, with a pause before every sample so that
    spinning BLAS threads of the previous model do not slow the next one; then one untimed call wakes
    the model's own threads, and the sample repeats the call enough times to last about ``target``
    seconds (the steady state of a model serving one request after another).
    """
    number = {name: _calls_per_sample(m, x, target) for name, m in models.items()}
    samples: dict = {name: [] for name in models}
    bar = _progress_bar(rounds, desc, pause > 0)
    for _ in range(rounds):
        for name, model in models.items():
            time.sleep(pause)
            model(x)  # untimed: wakes this model's kernel threads after the pause
            t0 = time.perf_counter()
            for _ in range(number[name]):
                model(x)
            samples[name].append((time.perf_counter() - t0) / number[name])
        bar.update(1)
    bar.close()
    return samples


def speed_columns(models: dict, in_features: int, *, rounds: int, batch: int = 256, seed: int = 0,
                  fast: bool = False) -> dict:
    """Batch-1 latency, batch-``batch`` throughput and speed-ups over the first (dense) model.

    Medians of the samples, and the best sample (``_min``): on a shared machine other work only ever
    adds time, so the best sample is the closer estimate of what the code itself costs. ``fast`` takes
    one short sample per model without pauses: it checks that everything runs, and its figures are not
    measurements.
    """
    rng = np.random.default_rng(seed)
    x1 = rng.standard_normal(in_features).astype(np.float32)
    xb = rng.standard_normal((batch, in_features)).astype(np.float32)
    kw = {"rounds": rounds, "target": 0.001, "pause": 0.0} if fast else {"rounds": rounds}
    t1 = time_models(models, x1, desc="batch 1", **kw)
    tb = time_models(models, xb, desc=f"batch {batch}", **kw)
    base = next(iter(models))
    cols = {}
    for name in models:
        m1, mb = statistics.median(t1[name]), statistics.median(tb[name])
        b1 = min(t1[name])
        cols[name] = {
            "latency_us": m1 * 1e6, "latency_us_min": b1 * 1e6, "rows_per_s": batch / mb,
            "speedup_b1": statistics.median(t1[base]) / m1, "speedup_b1_min": min(t1[base]) / b1,
            "speedup_b256": statistics.median(tb[base]) / mb,
        }
    return cols


def _formats(model) -> str:
    return " / ".join(layer.format for layer in model.linears)


def _speed_cells(s: dict) -> list[str]:
    return [f"{s['latency_us']:.0f} / {s['latency_us_min']:.0f}", f"{s['rows_per_s']:,.0f}",
            f"{s['speedup_b1']:.2f}x / {s['speedup_b1_min']:.2f}x", f"{s['speedup_b256']:.2f}x"]


SPEED_HEADER = ["batch-1 latency us (median / best)", "batch-256 rows/s", "speed-up b1 (median / best)",
                "speed-up b256"]


# --------------------------------------------------------------------------------------------------
# tables

def markdown_table(header: list[str], rows: list[list]) -> str:
    def cell(v):
        if isinstance(v, float):
            return f"{v:.3g}" if abs(v) < 100 else f"{v:,.0f}"
        return str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _threads() -> int:
    import numba

    return numba.get_num_threads()


def environment() -> str:
    """One line naming what the figures depend on: library versions, threads, the BLAS settings."""
    import platform

    import numba

    from .. import _config

    names = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
    blas = ", ".join(f"{k}={os.environ[k]}" for k in names if k in os.environ)
    return (f"numpy {np.__version__}, numba {numba.__version__} ({_config.threading_layer()} layer, "
            f"{_threads()} threads), {_cpu_model() or platform.machine()}, {os.cpu_count()} logical CPUs, "
            f"last-level cache {_llc_text()}; {blas or 'OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE unset'}")


def _cpu_model() -> str:
    """Return the CPU's model name (Linux's /proc/cpuinfo), or "" where it cannot be read."""
    return _config.cpu_model()


def _llc_text() -> str:
    """Return the largest cache level Linux reports for CPU 0 (sysfs), e.g. "300 MiB"; "unknown" elsewhere."""
    best = _config.llc_bytes()
    return f"{best / (1 << 20):.0f} MiB" if best else "unknown"


# --------------------------------------------------------------------------------------------------
# the wide MLP: speed only

def wide_demo(*, fast: bool, rounds: int) -> str:
    from ..compression import compress
    from ..nn import MLP

    sizes = [256, 1024, 1024, 256] if fast else [1024, 4096, 4096, 1024]
    _say(f"wide MLP {sizes} (synthetic weights, ReLU): building the compressed versions ...")
    dense = MLP.init(sizes, seed=0)
    models = {"dense fp32 (NumPy BLAS)": dense}
    bar = _progress_bar(len(VARIANTS), "compress", not fast)
    for name, kw in VARIANTS:
        models[name] = compress(dense, **kw)
        bar.update(1)
    bar.close()
    _say(f"timing batch 1 and batch 256, {rounds} interleaved rounds, median ...")
    speed = speed_columns(models, sizes[0], rounds=rounds, fast=fast)
    dense_bytes = dense.nbytes
    rows = [[name, _formats(m), f"{m.nbytes / 2**20:.1f}", f"{dense_bytes / m.nbytes:.1f}x",
             *_speed_cells(speed[name])] for name, m in models.items()]
    header = ["model", "layers stored as", "MiB", "smaller", *SPEED_HEADER]
    title = (f"Wide MLP {sizes}, float32 activations, {_threads()} threads, {rounds} interleaved rounds "
             f"(speed-ups over the dense model through NumPy/BLAS; weights stay in cache between calls "
             f"only where they fit the last-level cache)")
    return f"{title}{_FAST_NOTE if fast else ''}\n\n{markdown_table(header, rows)}\n\n{_FORMATS_NOTE}\n"


# What the "layers stored as" column's names hold, printed under each table.
_FORMATS_NOTE = ("Layers stored as: dense = float32 array; int8 = int8 codes of every entry with per-row float32 "
                "scales; csr = float32 values of the kept entries with uint16 column ids; csr-int8 = int8 codes "
                "of the kept entries (same pattern) with per-row float32 scales.")

_FAST_NOTE = " [fast mode: small models, one short timing sample each; the figures are a smoke test]"


# --------------------------------------------------------------------------------------------------
# digits: accuracy, bytes and speed

def digits_demo(*, fast: bool, seeds: list[int], rounds: int,
                plot_path: str | None = None) -> tuple[str, str | None]:
    """Return the digits table and the path of its plot, drawn at ``plot_path`` when given (else None)."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        return "digits part skipped: scikit-learn is not installed (pip install 'numaccel[examples]')\n", None
    from ..compression import compress
    from ..distillation import distill
    from ..nn import MLP
    from ..optimization import optimize
    from ..training import train

    cfg = DIGITS_FAST if fast else DIGITS
    data = load_digits()
    X = (data.data / 16.0).astype(np.float32)
    y = data.target.astype(np.int64)
    acc: dict = {}
    first: dict = {}
    for seed in seeds:
        _say(f"digits, seed {seed}: training the teacher, compressing, distilling ...")
        Xrest, yrest, Xte, yte = _split(X, y, seed)
        Xtr, ytr, Xval, yval = _split(Xrest, yrest, seed + 100)  # validation rows for the optimizer
        teacher = train(MLP.init(cfg["teacher"], seed=seed), Xtr, ytr, epochs=cfg["epochs"], lr=cfg["lr"],
                        weight_decay=cfg["weight_decay"], validation_fraction=0, seed=seed, progress=not fast)
        models = {"teacher, dense fp32": teacher, "int8": compress(teacher, int8=True, format="int8")}
        for s in (0.5, 0.8, 0.9):
            models[f"pruned {s:.0%} + fine-tune"] = compress(
                teacher, sparsity=s, data=(Xtr, ytr), finetune_epochs=cfg["finetune_epochs"],
                steps=cfg["steps"], lr=cfg["finetune_lr"], validation_fraction=0, seed=seed, progress=not fast,
                format="csr")
        # the pruned, fine-tuned model's own pattern, its values quantized per row (pruned-int8)
        models["pruned 90% + int8"] = compress(models["pruned 90% + fine-tune"], int8=True, format="csr-int8")
        student0 = MLP.init(cfg["student"], seed=seed + 1000)
        # the students with the trainers' defaults: early stopping on the validation rows
        student_kw = {"validation_data": (Xval, yval), "seed": seed, "progress": not fast, **cfg["student_train"]}
        models["student, distilled"] = distill(teacher, student0, Xtr, ytr, temperature=cfg["temperature"],
                                               alpha=cfg["alpha"], **student_kw)
        models["student, labels only"] = train(student0, Xtr, ytr, **student_kw)
        models["optimized (batch 1, 1-point budget)"] = optimize(
            teacher, (Xval, yval), max_accuracy_drop=0.01, batch_size=1, repeats=1 if fast else 7, seed=seed,
            progress=not fast)
        for name, m in models.items():
            acc.setdefault(name, []).append(100.0 * float((m.predict(Xte) == yte).mean()))
        if not first:
            first = models
    _say(f"timing the digits models (seed {seeds[0]}): batch 1 and batch 256 ...")
    speed = speed_columns(first, X.shape[1], rounds=rounds, fast=fast)
    dense_bytes = first["teacher, dense fp32"].nbytes
    teacher_acc = statistics.mean(acc["teacher, dense fp32"])
    header = (["model"] + [f"acc % s{s}" for s in seeds]
              + ["mean acc %", "vs teacher", "layers stored as", "params", "bytes", "smaller", *SPEED_HEADER])
    rows = []
    for name, m in first.items():
        a = acc[name]
        rows.append([name] + [f"{v:.2f}" for v in a]
                    + [f"{statistics.mean(a):.2f}", f"{statistics.mean(a) - teacher_acc:+.2f}", _formats(m),
                       m.num_params, m.nbytes, f"{dense_bytes / m.nbytes:.1f}x", *_speed_cells(speed[name])])
    title = (f"Digits (scikit-learn load_digits, 1797 images 8x8; per seed a stratified 64/16/20 split into "
             f"training, validation and test rows: every model trains on the training rows, the optimizer "
             f"measures accuracy on the validation rows, the table reports the test rows), teacher "
             f"{cfg['teacher']}, student {cfg['student']}, {_threads()} threads; \"pruned 90% + int8\" is the "
             f"pruned, fine-tuned model with its values quantized to int8 (per-row scales); bytes include the "
             f"float32 biases; speed from seed {seeds[0]}'s models, {rounds} interleaved rounds")
    text = f"{title}{_FAST_NOTE if fast else ''}\n\n{markdown_table(header, rows)}\n\n{_FORMATS_NOTE}\n"
    drawn = None
    if plot_path is not None:
        drawn = _plot(first, acc, speed, plot_path)
        if drawn is None:
            _say("plot skipped: matplotlib is not installed (pip install 'numaccel[examples]')")
    return text, drawn


# Digits settings: Adam throughout, the teacher with decoupled weight decay (a regularised teacher gives
# softer targets), 60 epochs; pruning in 6 steps of the cubic schedule with 15 epochs of masked fine-tuning
# after each; the student (35x fewer parameters) trained with the trainers' defaults either way (early
# stopping on the validation rows; at most 5 epochs in fast mode).
DIGITS = {
    "teacher": [64, 256, 256, 10], "student": [64, 32, 10], "epochs": 60, "lr": 1e-3, "weight_decay": 0.5,
    "finetune_epochs": 15, "steps": 6, "finetune_lr": 1e-3, "student_train": {},
    "temperature": 4.0, "alpha": 0.9,
}
DIGITS_FAST = dict(DIGITS, teacher=[64, 64, 10], epochs=5, finetune_epochs=1, steps=1, student_train={"epochs": 5})


def _split(X, y, seed):
    """Split 80/20, stratified by class, drawn from ``seed``."""
    rng = np.random.default_rng(seed)
    test = np.zeros(len(y), dtype=bool)
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        test[rng.choice(idx, size=round(0.2 * idx.size), replace=False)] = True
    return X[~test], y[~test], X[test], y[test]


def _plot(models, acc, speed, path: str) -> str | None:
    """Draw accuracy against batch-1 speed-up to ``path`` (PNG); None when matplotlib is not installed.

    The figure is a ``matplotlib.figure.Figure`` on its own Agg canvas: neither pyplot's state nor the
    selected backend (a notebook's, say) is touched.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return None
    fig = Figure(figsize=(7, 4.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    biggest = max(m.nbytes for m in models.values())
    for name, m in models.items():
        xs, ys = speed[name]["speedup_b1_min"], statistics.mean(acc[name])
        ax.scatter(xs, ys, s=40 + 1500 * m.nbytes / biggest, alpha=0.6)
        ax.annotate(f"{name}\n{m.nbytes / 1024:.0f} KiB", (xs, ys), fontsize=7, ha="center", va="bottom")
    ax.set_xscale("log")
    ax.set_xlabel("batch-1 speed-up over the dense model through NumPy BLAS (best of rounds, log scale)")
    ax.set_ylabel("test accuracy, mean over seeds (%)")
    ax.set_title("digits: accuracy vs speed-up (marker area = bytes)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path


# --------------------------------------------------------------------------------------------------

def run(*, fast: bool = False, seeds=None, out: str | None = None, plot: bool = True, wide: bool = True,
        digits: bool = True) -> str:
    """Run the demo, print its tables and return them; write files only when ``out`` is given.

    Parameters
    ----------
    fast : bool, keyword-only
        Small models, one seed, one short timing sample per model: a smoke test that takes seconds.
    seeds : sequence of int, optional, keyword-only
        Seeds of the digits part (default ``[0]`` when ``fast``, else ``[0, 1, 2]``).
    out : str or os.PathLike, optional, keyword-only
        Folder to write ``demo_wide.md``, ``demo_digits.md`` and ``demo_digits.png`` into (created if
        missing). None (the default) writes nothing at all.
    plot : bool, keyword-only
        Draw the PNG plot (only with ``out``, and when matplotlib is installed).
    wide, digits : bool, keyword-only
        Which parts to run.

    Returns
    -------
    str
        The tables, as printed.

    Notes
    -----
    Every path written is printed at the end. The figures depend on the host; the tables name the
    library versions, threads and BLAS settings they were measured with.
    """
    rounds = 1 if fast else 7
    seeds = list(seeds) if seeds is not None else ([0] if fast else [0, 1, 2])
    if out is not None:
        os.makedirs(out, exist_ok=True)
    t0 = time.perf_counter()
    parts = []
    plots = []
    env = f"Environment: {environment()}. Command: numaccel demo{' --fast' if fast else ''}.\n\n"
    if wide:
        text = wide_demo(fast=fast, rounds=rounds)
        _say("\n" + text)
        parts.append(("demo_wide.md", text))
    if digits:
        plot_path = os.path.join(out, "demo_digits.png") if out is not None and plot else None
        text, drawn = digits_demo(fast=fast, seeds=seeds, rounds=rounds, plot_path=plot_path)
        _say("\n" + text)
        parts.append(("demo_digits.md", text))
        if drawn is not None:
            plots.append(drawn)
    seconds = time.perf_counter() - t0
    if out is None:
        _say(f"done in {seconds:.0f} s; nothing written (pass --out DIR to keep the tables and the plot)")
    else:
        written = []
        for name, text in parts:
            written.append(os.path.join(out, name))
            with open(written[-1], "w") as f:
                f.write(env + text)
        _say(f"wrote {', '.join(written + plots)} ({seconds:.0f} s in all)")
    return "\n".join(text for _, text in parts)
