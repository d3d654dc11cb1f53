"""``optimize``: every layer's format chosen from its speed and its accuracy, both measured on this host.

The search, in order:

1. **Candidates** per Linear layer: the layer as it is, dense float32, int8 per channel (weight-only and
   W8A8), int8 per group, CSR at several sparsities and pruned-int8 at the same sparsities.
2. **Latency** of every candidate, timed on this host for the layer's shape at ``batch_size`` (median of
   interleaved rounds; weights rotated through copies larger than the last-level cache when the model does
   not fit it), once per distinct shape.
3. **Sensitivity**: validation accuracy with one layer swapped to a candidate and the rest as given (after
   masked fine-tuning of the pruned candidates when training data is given).
4. **Joint choice**: a multiple-choice knapsack, the least total cost (latency or bytes) whose summed
   accuracy drops fit the budget; the chosen mix is built (and fine-tuned) and checked on the validation
   data; while it misses the budget its most damaging choice is forbidden and the knapsack solved again.
5. **Whole models**: the mix, the uniform models (one format on every layer) that keep the budget, and the
   input model are compared; for latency the leading ones are timed as whole models (a mix can cost more
   than its layers when thread pools fight) and the fastest measured one is returned.
"""

from __future__ import annotations

import copy
import math
import numbers
import statistics
import time
from dataclasses import dataclass

import numpy as np

from . import _config, formats
from ._validate import as_fraction
from .nn import Linear, Sequential
from .nn.containers import _as_model
from .pruning import magnitude_mask

__all__ = ["OptimizeReport", "optimize"]

_OBJECTIVES = ("latency", "bytes")
_FAMILIES = ("int8", "int8-w8a8", "int8-group", "csr", "csr-int8")
_KNAPSACK_UNITS = 400  # the accuracy budget in this many steps
_SAMPLE_SECONDS = 0.004  # one timing sample repeats a call for about this long
_BLAS_PAUSE = 0.1  # after BLAS calls, so that its spinning threads do not slow the next candidate
_WHOLE_MODELS = 3  # uniform models timed whole, besides the mix and the input model


@dataclass(frozen=True)
class _Kind:
    """One candidate format for a layer; ``build`` stores a dense float32 weight (masked already, if pruned)."""

    name: str
    sparsity: float | None = None
    int8: bool = False
    group_size: int | None = None
    w8a8: bool = False
    keep: bool = False

    @property
    def activation_quant(self):
        return "int8" if self.w8a8 else None

    def build(self, w: np.ndarray):
        from .quantization import quantize

        if self.sparsity is not None:
            sw = formats.CSRWeight.from_dense(w)
            return quantize(sw) if self.int8 else sw
        if self.int8:
            return quantize(w, group_size=self.group_size)
        return w

    def masked(self, w: np.ndarray) -> np.ndarray:
        """``w`` pruned to this kind's sparsity by magnitude (``w`` itself for an unpruned kind)."""
        if self.sparsity is None:
            return w
        return np.where(magnitude_mask(w, self.sparsity), w, np.float32(0))


def _kinds(layer: Linear, families, sparsities, group_size) -> list[_Kind]:
    n, k = layer.weight.shape
    keep_name = "dense" if isinstance(layer.weight, np.ndarray) else f"as given ({layer.format})"
    kinds = [_Kind(keep_name, keep=True, w8a8=layer.activation_quant == "int8")]  # the layer as it runs
    if not isinstance(layer.weight, np.ndarray):
        kinds.append(_Kind("dense"))
    if "int8" in families:
        kinds.append(_Kind("int8", int8=True))
    if "int8-w8a8" in families:
        kinds.append(_Kind("int8-w8a8", int8=True, w8a8=True))
    if "int8-group" in families and k >= 2 * group_size:
        kinds.append(_Kind(f"int8-g{group_size}", int8=True, group_size=group_size))
        if "int8-w8a8" in families:
            kinds.append(_Kind(f"int8-g{group_size}-w8a8", int8=True, group_size=group_size, w8a8=True))
    for s in sparsities:
        pct = f"{100 * s:g}%"
        if "csr" in families:
            kinds.append(_Kind(f"csr-{pct}", sparsity=s))
        if "csr-int8" in families:
            kinds.append(_Kind(f"csr-int8-{pct}", sparsity=s, int8=True))
            if "int8-w8a8" in families:
                kinds.append(_Kind(f"csr-int8-{pct}-w8a8", sparsity=s, int8=True, w8a8=True))
    return kinds


# --------------------------------------------------------------------------------------------------
# the report

class OptimizeReport(list):
    """What :func:`optimize` measured and chose: one dict per Linear layer, and the whole models.

    Each layer's dict has ``layer``, ``shape``, ``candidates`` (one dict per candidate: ``name``, ``format``,
    ``activation_quant``, ``latency_s``, ``bytes``, ``accuracy`` and ``accuracy_drop`` on the validation
    data with only this layer swapped) and the choice (``choice``, ``format``, ``activation_quant``,
    ``latency_s``, ``bytes``, ``accuracy_drop``).

    Attributes
    ----------
    before, after : dict
        The input and the returned model: ``accuracy`` (validation), ``latency_s`` (median whole-model
        latency at ``batch_size``), ``latency_range_s`` (lowest and highest round) and ``bytes``.
    models : list of dict
        Whole models compared at the end: ``name`` (``"input"``, ``"mix"``, ``"uniform <kind>"``),
        ``accuracy``, ``bytes``, ``latency_s`` (measured as a whole model when ``measured``, else the sum
        of its layers' latencies), ``within_budget`` and ``chosen``.
    settings : dict
        The arguments that shaped the search, and the host (CPU model, logical CPUs, last-level cache).
    """

    def __init__(self, layers, *, before, after, models, settings):
        super().__init__(layers)
        self.before, self.after, self.models, self.settings = before, after, models, settings

    def table(self) -> str:
        """Return the report as Markdown: the settings, one row per layer, then the whole models."""
        s = self.settings
        head = (f"numaccel.optimize on {s['host']}: batch {s['batch_size']}, objective {s['objective']}, "
                f"budget {100 * s['max_accuracy_drop']:.2f} points of validation accuracy"
                f"{', cold weights' if s['cold'] else ''}")
        rows = ["| layer | shape | choice | latency | bytes | accuracy drop (points) | fastest candidate |",
                "|---|---|---|---|---|---|---|"]
        for r in self:
            fastest = min(r["candidates"], key=lambda c: c["latency_s"])
            rows.append(f"| {r['layer']} | {r['shape'][0]}x{r['shape'][1]} | {r['choice']} | "
                        f"{_fmt_time(r['latency_s'])} | {r['bytes']:,} | {100 * r['accuracy_drop']:+.2f} | "
                        f"{fastest['name']} ({_fmt_time(fastest['latency_s'])}, "
                        f"{100 * fastest['accuracy_drop']:+.2f}) |")
        models = ["| model | accuracy % | latency | bytes | within budget | chosen |", "|---|---|---|---|---|---|"]
        for m in self.models:
            lat = _fmt_time(m["latency_s"]) + ("" if m["measured"] else " (sum of layers)")
            models.append(f"| {m['name']} | {100 * m['accuracy']:.2f} | {lat} | {m['bytes']:,} | "
                          f"{'yes' if m['within_budget'] else 'no'} | {'**yes**' if m['chosen'] else ''} |")
        b, a = self.before, self.after
        tail = (f"Before: {100 * b['accuracy']:.2f} %, {_fmt_time(b['latency_s'])}, {b['bytes']:,} bytes. "
                f"After: {100 * a['accuracy']:.2f} %, {_fmt_time(a['latency_s'])}, {a['bytes']:,} bytes "
                f"({b['latency_s'] / a['latency_s']:.2f}x faster, {b['bytes'] / a['bytes']:.1f}x smaller).")
        return f"{head}\n\n" + "\n".join(rows) + "\n\n" + "\n".join(models) + f"\n\n{tail}\n"

    def __str__(self) -> str:
        """Return the Markdown table (:meth:`table`)."""
        return self.table()

    def plot(self, path) -> str | None:
        """Draw validation accuracy against latency of every candidate model into ``path`` (PNG).

        The chosen model is highlighted. Returns ``path``, or None when matplotlib is not installed.
        """
        try:
            from matplotlib.backends.backend_agg import FigureCanvasAgg
            from matplotlib.figure import Figure
        except ImportError:
            return None
        fig = Figure(figsize=(7, 4.5))  # its own Agg canvas: pyplot's state and the backend stay untouched
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        for m in self.models:
            style = {"marker": "*", "s": 260, "color": "tab:red", "zorder": 3} if m["chosen"] else \
                {"marker": "o" if m["measured"] else "x", "s": 50, "color": "tab:blue" if m["within_budget"]
                 else "tab:gray"}
            ax.scatter(m["latency_s"] * 1e3, 100 * m["accuracy"], **style)
            ax.annotate(m["name"], (m["latency_s"] * 1e3, 100 * m["accuracy"]), fontsize=7,
                        xytext=(4, 3), textcoords="offset points")
        floor = 100 * (self.before["accuracy"] - self.settings["max_accuracy_drop"])
        ax.axhline(floor, color="tab:gray", linestyle="--", linewidth=0.8)
        ax.set_xlabel(f"latency at batch {self.settings['batch_size']} (ms; x: sum of layers, o: whole model)")
        ax.set_ylabel("validation accuracy (%)")
        ax.set_title(f"numaccel.optimize: candidates and the choice (star)\n{self.settings['host']}", fontsize=9)
        fig.tight_layout()
        fig.savefig(path, dpi=120)
        return str(path)


def _fmt_time(t: float) -> str:
    return f"{t * 1e3:.3f} ms" if t >= 1e-3 else f"{t * 1e6:.1f} us"


# --------------------------------------------------------------------------------------------------
# timing

def _calls_for(fn) -> int:
    fn()  # warm-up: compiles or loads the kernels, packs the weight
    best = math.inf
    for _ in range(3):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return max(1, min(2000, int(_SAMPLE_SECONDS / max(best, 1e-7))))


def _time_interleaved(fns: dict, blas: set, repeats: int, bar) -> dict:
    """Seconds per call of each ``fns[key]()``: ``repeats`` interleaved rounds, ``{key: [samples]}``.

    The keys in ``blas`` call BLAS; a short pause follows their samples so that BLAS's spinning threads
    do not slow the next candidate's kernel threads.
    """
    number = {key: _calls_for(fn) for key, fn in fns.items()}
    samples: dict = {key: [] for key in fns}
    order = sorted(fns, key=lambda key: key in blas)  # BLAS candidates last in each round
    for _ in range(repeats):
        for key in order:
            fn, n = fns[key], number[key]
            fn()  # untimed: wakes this candidate's threads
            t0 = time.perf_counter()
            for _ in range(n):
                fn()
            samples[key].append((time.perf_counter() - t0) / n)
            if key in blas:
                time.sleep(_BLAS_PAUSE)
        bar.update(1)
    return samples


def _time_cold(cands: dict, repeats: int, llc: int, bar, run=None) -> dict:
    """Seconds per call of every candidate, weights cold: ``{key: [samples]}``.

    ``cands[key] = (weight, bias, x, activation_quant, uses_blas)``. The numaccel candidates and the BLAS
    ones form two groups; each group's weights are copied until the group holds more than twice the
    last-level cache, and a round calls every candidate once on each copy in turn, so that no weight is
    in cache when it is called. BLAS's group runs after numaccel's in every round, with a pause after it.
    ``run(key)`` (default: none) returns a context manager each call runs in (``numaccel.tune`` forces a
    kernel variant with it).
    """
    from .ops import linear

    def linear_in(key, *args, **kw):
        if run is None:
            return linear(*args, **kw)
        with run(key):
            return linear(*args, **kw)

    groups = [[k for k in cands if not cands[k][4]], [k for k in cands if cands[k][4]]]
    copies = {}
    for group in groups:
        total = sum(formats.nbytes(cands[k][0]) for k in group)
        n = max(1, min(64, -(-2 * llc // max(1, total)))) if group else 0
        for k in group:
            w = cands[k][0]
            copies[k] = [w] + [copy.deepcopy(w) for _ in range(n - 1)]
    samples: dict = {k: [] for k in cands}
    for k, ws in copies.items():  # warm-up: compiles or loads kernels, packs every copy
        _, b, x, aq, _ = cands[k]
        for w in ws:
            linear_in(k, x, w, b, activation_quant=aq)
    for _ in range(repeats):
        for group in groups:
            if not group:
                continue
            for r in range(len(copies[group[0]])):
                for k in group:
                    _, b, x, aq, _ = cands[k]
                    t0 = time.perf_counter()
                    linear_in(k, x, copies[k][r], b, activation_quant=aq)
                    samples[k].append(time.perf_counter() - t0)
            if cands[group[0]][4]:
                time.sleep(_BLAS_PAUSE)
        bar.update(1)
    return samples


def _time_layers(cands: dict, repeats: int, cold_llc: int, bar) -> dict:
    """Seconds per call of every candidate ``cands[key] = (weight, bias, x, activation_quant, uses_blas)``.

    Cold (weights rotated through copies) when ``cold_llc``, the last-level cache in bytes, is nonzero.
    """
    if cold_llc:
        return _time_cold(cands, repeats, cold_llc, bar)
    return _time_interleaved({key: _call(*v[:4]) for key, v in cands.items()},
                             {key for key, v in cands.items() if v[4]}, repeats, bar)


def _time_models(models: dict, x, repeats: int, bar) -> dict:
    """Seconds per forward call of every ``models[name]`` on ``x``: ``{name: [samples]}``, interleaved."""
    blas = {n for n, m in models.items() if any(_uses_blas(layer.weight) for layer in m.linears)}
    return _time_interleaved({n: _forward(m, x) for n, m in models.items()}, blas, repeats, bar)


def _call(w, b, x, aq):
    from .ops import linear

    return lambda: linear(x, w, b, activation_quant=aq)


def _forward(model, x):
    return lambda: model(x)


def _uses_blas(weight) -> bool:
    return isinstance(weight, np.ndarray)


# --------------------------------------------------------------------------------------------------
# accuracy

def _scores(model, X, y) -> tuple[float, float]:
    """Return the validation accuracy and mean negative log-likelihood of ``model``."""
    from .training import log_softmax

    z = np.asarray(model(X), dtype=np.float64)
    acc = float((np.argmax(z, axis=1) == y).mean())
    nll = float(-log_softmax(z)[np.arange(y.size), y].mean())
    return acc, nll


def _assemble(model: Sequential, weights: list, aqs: list, biases: list) -> Sequential:
    it = iter(zip(weights, aqs, biases, strict=True))
    layers = []
    for layer in model.layers:
        if isinstance(layer, Linear):
            w, aq, b = next(it)
            layers.append(Linear(w, b, activation_quant=aq))
        else:
            layers.append(layer)
    return type(model)(layers)


# --------------------------------------------------------------------------------------------------
# the knapsack

def _knapsack(costs: list, drops: list, budget: float, allowed: list):
    """Per layer an index into its candidates: least total cost with ``sum(drops) <= budget``.

    ``costs[i][c]`` and ``drops[i][c]`` (clipped at 0) for candidate ``c`` of layer ``i``; ``allowed[i][c]``
    false removes a candidate. Drops are counted in ``_KNAPSACK_UNITS`` steps of the budget (rounded up, so
    the sum of the true drops never exceeds the budget). None when no choice fits.
    """
    units = _KNAPSACK_UNITS
    best = np.full(units + 1, np.inf)
    best[0] = 0.0
    back = []
    for cost_i, drop_i, ok_i in zip(costs, drops, allowed, strict=True):
        new = np.full(units + 1, np.inf)
        arg = np.full(units + 1, -1, dtype=np.int64)
        for c, (cost, drop, ok) in enumerate(zip(cost_i, drop_i, ok_i, strict=True)):
            if not ok:
                continue
            d = max(0.0, drop)
            if budget > 0:
                u = math.ceil(d / budget * units - 1e-9)
            else:
                u = 0 if d == 0 else units + 1
            if u > units:
                continue
            cand = np.full(units + 1, np.inf)
            cand[u:] = best[:units + 1 - u] + cost
            better = cand < new
            new[better] = cand[better]
            arg[better] = c * (units + 1) + (np.arange(units + 1)[better] - u)
        best = new
        back.append(arg)
    if not np.isfinite(best).any():
        return None
    u = int(np.argmin(best))
    choice = []
    for arg in reversed(back):
        c, u = divmod(int(arg[u]), units + 1)
        choice.append(c)
    return choice[::-1]


# --------------------------------------------------------------------------------------------------
# arguments

def _check_data(data, model, name):
    from .training import _as_inputs, _as_labels

    if not isinstance(data, (tuple, list)) or len(data) != 2:
        raise TypeError(f"{name} must be a pair (X, y), got {type(data).__name__}")
    X = _as_inputs(data[0], f"{name}[0]")
    if X.shape[0] == 0:
        raise ValueError(f"{name}[0] must have at least one row, got shape {X.shape}")
    k = model.linears[0].in_features
    if X.shape[1] != k:
        raise ValueError(f"{name}[0] must have {k} features (the model's inputs), got shape {X.shape}")
    y = _as_labels(data[1], X.shape[0], model.linears[-1].out_features, f"{name}[1]")
    return X, y


def _check_options(max_accuracy_drop, batch_size, objective, sparsities, candidates, group_size, repeats):
    from .training import _positive_int

    budget = as_fraction(max_accuracy_drop, "max_accuracy_drop")
    batch_size = _positive_int(batch_size, "batch_size")
    if objective not in _OBJECTIVES:
        raise ValueError(f"objective must be one of {_OBJECTIVES}, got {objective!r}")
    sp = []
    for s in sparsities:
        if isinstance(s, bool) or not isinstance(s, numbers.Real) or not 0 < s < 1:
            raise ValueError(f"sparsities must be numbers in (0, 1), got {s!r}")
        sp.append(float(s))
    if isinstance(candidates, str):
        raise ValueError(f"candidates must be a sequence of format names (e.g. ({candidates!r},)), not a string")
    families = _FAMILIES if candidates is None else tuple(candidates)
    for f in families:
        if f not in _FAMILIES:
            raise ValueError(f"candidates must name formats among {_FAMILIES}, got {f!r}")
    group_size = _positive_int(group_size, "group_size")
    repeats = _positive_int(repeats, "repeats")
    return budget, batch_size, sorted(set(sp)), families, group_size, repeats


# --------------------------------------------------------------------------------------------------

def optimize(model, data, *, max_accuracy_drop: float = 0.01, batch_size: int = 1, objective: str = "latency",
             sparsities=(0.5, 0.75, 0.9, 0.95), candidates=None, group_size: int = 128, train_data=None,
             finetune_epochs: int = 0, steps: int = 3, lr: float = 5e-4, repeats: int = 7, seed=0,
             progress: bool = False, plot=None) -> Sequential:
    """Choose every layer's format from measured speed and measured accuracy; return the new model.

    Parameters
    ----------
    model : Sequential or MLP
        A classifier (the last layer gives the logits); weights of any registered format. Not modified.
    data : (X_val, y_val)
        Validation data: float ``X_val`` (n, K) and integer class ids ``y_val`` (n,). Accuracy on it decides
        what the budget allows; keep separate test data to check the result.
    max_accuracy_drop : float in [0, 1], keyword-only
        The budget: the returned model's validation accuracy is at least the input model's minus this
        (0.01: one point).
    batch_size : int, keyword-only
        Rows per call the model will serve; every latency is measured at this batch.
    objective : {"latency", "bytes"}, keyword-only
        Minimise latency at ``batch_size`` or the bytes the weights take, within the budget.
    sparsities : sequence of float in (0, 1), keyword-only
        Sparsities tried for the CSR and pruned-int8 candidates.
    candidates : sequence of str, optional, keyword-only
        Formats tried besides the layer as given (and dense float32): among ``"int8"`` (per channel,
        weight-only), ``"int8-w8a8"`` (activations quantized on the fly, which the planner runs on AMX or
        VNNI where the host has them), ``"int8-group"`` (``group_size`` features per scale; with
        ``"int8-w8a8"`` also in its W8A8 form), ``"csr"`` and ``"csr-int8"`` (pruned-int8; with
        ``"int8-w8a8"`` also in its W8A8 form). All of them by default.
    group_size : int, keyword-only
        Group length of the ``"int8-group"`` candidates (tried on layers with at least twice as many inputs).
    train_data : (X, y), optional, keyword-only
        Training data for masked fine-tuning of pruned candidates; needed when ``finetune_epochs > 0``.
    finetune_epochs, steps, lr : keyword-only
        With ``finetune_epochs > 0``, every pruned candidate is fine-tuned before its accuracy is measured
        (the model with that layer pruned, in ``steps`` steps of :func:`numaccel.compression.schedule`,
        ``finetune_epochs`` epochs of :func:`numaccel.train` each, step size ``lr``), and so is the chosen
        model (all its pruned layers together; its other layers are fine-tuned along).
    repeats : int, keyword-only
        Interleaved timing rounds; every latency is the median of the rounds.
    seed : int or None, keyword-only
        Seeds the timing inputs and the fine-tuning.
    progress : bool, keyword-only
        Progress bars (tqdm when installed) on the long steps.
    plot : str or path, optional, keyword-only
        Draw the candidates' accuracy against latency, the choice highlighted, into this PNG file
        (:meth:`OptimizeReport.plot`; skipped when matplotlib is not installed).

    Returns
    -------
    Sequential
        Same class as ``model``; ``result.report`` is an :class:`OptimizeReport`. Layers chosen as W8A8
        carry ``activation_quant="int8"`` themselves (:class:`numaccel.nn.Linear`), so ``result(x)`` runs
        the mix as chosen, and :func:`numaccel.save` keeps it.

    Raises
    ------
    TypeError
        ``data`` or ``train_data`` not a pair, non-float ``X``, non-integer labels, arguments of the wrong type.
    ValueError
        Shapes that disagree with the model, labels out of range, options out of range,
        ``finetune_epochs > 0`` without ``train_data``.

    See Also
    --------
    numaccel.compress : one format for every layer, chosen by hand.

    Notes
    -----
    Each candidate's latency is measured for its layer alone on random activations (timing does not
    depend on values); its accuracy effect on ``data`` with that one layer swapped. The joint choice adds
    the per-layer accuracy drops (drops below zero count as zero), which misjudges interactions, so the
    chosen mix is always checked whole; while it misses the budget, its most damaging choice is forbidden
    and the choice solved again. The mix is compared with every uniform model (the same format on every
    layer) that keeps the budget, and with the input model. For ``objective="latency"`` the
    ``3`` uniform models with the least summed layer latency are timed as whole models beside the mix and
    the input model, and the fastest is returned: the returned model is never slower than the input
    model as measured, and a mix that loses to a uniform model is not returned. Timing is what the host
    says at the time: on a noisy machine two runs may choose differently; the accuracy measurements are
    deterministic for a ``seed``.

    Weights are timed cold (rotated through copies that exceed twice the last-level cache) when the
    input model's weights exceed the last-level cache, as they are when the model runs; otherwise hot.

    Examples
    --------
    >>> import numpy as np, numaccel as na
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(400, 16)).astype(np.float32); y = (X[:, 0] > 0).astype(np.int64)
    >>> net = na.train(na.nn.MLP.init([16, 32, 2], seed=0), X, y, epochs=20, lr=1e-2)
    >>> opt = na.optimize(net, (X, y), max_accuracy_drop=0.02, repeats=1, objective="bytes")
    >>> opt.report.after["accuracy"] >= opt.report.before["accuracy"] - 0.02
    True
    """
    from .training import _progress_bar

    model = _as_model(model)
    if not model.linears:
        raise ValueError("model has no Linear layers to optimize")
    Xv, yv = _check_data(data, model, "data")
    budget, batch_size, sparsities, families, group_size, repeats = _check_options(
        max_accuracy_drop, batch_size, objective, sparsities, candidates, group_size, repeats)
    from .training import _non_negative_float, _positive_int

    finetune_epochs = 0 if finetune_epochs == 0 else _positive_int(finetune_epochs, "finetune_epochs")
    steps = _positive_int(steps, "steps")
    lr = _non_negative_float(lr, "lr", positive=True)
    finetune = finetune_epochs > 0
    if finetune:
        if train_data is None:
            raise ValueError("finetune_epochs > 0 needs train_data=(X, y) to fine-tune on")
        Xt, yt = _check_data(train_data, model, "train_data")
    elif train_data is not None:
        _check_data(train_data, model, "train_data")

    linears = model.linears
    L = len(linears)
    biases = [layer.bias for layer in linears]
    originals = [layer.weight for layer in linears]
    dense = [np.asarray(formats.to_dense(w), dtype=np.float32) for w in originals]
    kinds = [_kinds(layer, families, sparsities, group_size) for layer in linears]
    acc0, nll0 = _scores(model, Xv, yv)
    llc = _config.llc_bytes()
    cold = bool(llc) and model.nbytes > llc
    host = (f"{_config.cpu_model() or 'unknown CPU'}, {_threads()} threads, last-level cache "
            f"{llc >> 20 if llc else '?'} MiB")

    def fine_tuned(pruned: dict) -> list:
        """Dense float32 weights after masked fine-tuning with ``{layer: sparsity}`` pruned, in steps."""
        from .compression import schedule
        from .training import train

        current = model.with_weights(dense)
        weights = list(dense)
        ramps = {i: schedule(s, steps) for i, s in pruned.items()}
        for step in range(steps):
            masks = [magnitude_mask(weights[i], ramps[i][step]) if i in ramps else None for i in range(L)]
            current = train(current, Xt, yt, epochs=finetune_epochs, lr=lr, seed=seed, masks=masks)
            weights = [np.asarray(formats.to_dense(layer.weight), dtype=np.float32) for layer in current.linears]
        return weights, [layer.bias for layer in current.linears]

    def build(choice: list):
        """Return the model with layer ``i`` stored as ``kinds[i][choice[i]]`` (fine-tuned when any is pruned)."""
        ks = [kinds[i][c] for i, c in enumerate(choice)]
        pruned = {i: k.sparsity for i, k in enumerate(ks) if k.sparsity is not None}
        if finetune and pruned:
            values, bs = fine_tuned(pruned)
            weights = [(values[i] if isinstance(originals[i], np.ndarray) else originals[i]) if k.keep
                       else k.build(k.masked(values[i])) for i, k in enumerate(ks)]
        else:
            weights, bs = [candidate(i, k) for i, k in enumerate(ks)], biases
        return _assemble(model, weights, [k.activation_quant for k in ks], bs)

    # 1-2. latency of every candidate, once per distinct layer shape
    rng = np.random.default_rng(seed)
    stored: dict = {}  # (layer, build key) -> the candidate's weight, built from the given values

    def candidate(i, kind):
        if kind.keep:
            return originals[i]
        key = (i, kind.sparsity, kind.int8, kind.group_size)
        if key not in stored:
            stored[key] = kind.build(kind.masked(dense[i]))
        return stored[key]

    cands, keys_of, timed = {}, [], {}  # timed[key]: (bytes, format name) of the candidate
    for i, layer in enumerate(linears):
        n, k = layer.weight.shape
        x = rng.standard_normal((batch_size, k)).astype(np.float32)
        row = []
        for kind in kinds[i]:
            key = (n, k, layer.bias is not None, kind.name if not kind.keep else f"keep{i}")
            if key not in cands:
                w = candidate(i, kind)
                cands[key] = (w, biases[i], x, kind.activation_quant, _uses_blas(w))
                timed[key] = (formats.nbytes(w) + (0 if biases[i] is None else int(biases[i].nbytes)),
                              formats.name_of(w))
            row.append(key)
        keys_of.append(row)
    bar = _progress_bar(repeats, "optimize: timing layers", progress)
    samples = _time_layers(cands, repeats, llc if cold else 0, bar)
    bar.close()
    latency = {key: statistics.median(s) for key, s in samples.items()}
    del cands, samples

    # 3. sensitivity: one layer swapped at a time
    bar = _progress_bar(sum(map(len, kinds)), "optimize: accuracy per layer", progress)
    acc = [[0.0] * len(ks) for ks in kinds]
    nll = [[0.0] * len(ks) for ks in kinds]
    keep_idx = [next(c for c, kd in enumerate(ks) if kd.keep) for ks in kinds]
    tuned: dict = {}
    for i in range(L):
        for c, kind in enumerate(kinds[i]):
            if kind.keep:
                acc[i][c], nll[i][c] = acc0, nll0
            else:
                choice = list(keep_idx)
                choice[i] = c
                if finetune and kind.sparsity is not None:
                    key = (i, kind.sparsity)
                    if key not in tuned:
                        tuned[key] = fine_tuned({i: kind.sparsity})
                    values, bs = tuned[key]
                    ws = [kind.build(kind.masked(values[j])) if j == i else values[j] for j in range(L)]
                    m = _assemble(model, ws, [kind.activation_quant if j == i else None for j in range(L)], bs)
                else:
                    m = build(choice)
                acc[i][c], nll[i][c] = _scores(m, Xv, yv)
            bar.update(1)
    bar.close()
    del tuned
    drops = [[acc0 - a for a in row] for row in acc]

    def cost_of(i, c):
        key = keys_of[i][c]
        lat, size = latency[key], timed[key][0]
        return (lat, size) if objective == "latency" else (size, lat)

    scale = [max(1e-30, sum(cost_of(i, keep_idx[i])[j] for i in range(L))) for j in (0, 1)]
    costs = [[cost_of(i, c)[0] / scale[0] + 1e-6 * cost_of(i, c)[1] / scale[1] for c in range(len(kinds[i]))]
             for i in range(L)]

    # 4. joint choice, checked whole, backed off while it misses the budget
    allowed = [[True] * len(ks) for ks in kinds]
    built: dict = {}

    def evaluate(choice):
        key = tuple(choice)
        if key not in built:
            m = build(choice)
            built[key] = (m, *_scores(m, Xv, yv))
        return built[key]

    mix = None
    for _ in range(4 * L + 4):
        choice = _knapsack(costs, drops, budget, allowed)
        if choice is None:
            break
        m, a, _nll = evaluate(choice)
        if acc0 - a <= budget + 1e-12:
            mix = choice
            break
        worst = max((i for i in range(L) if not kinds[i][choice[i]].keep),
                    key=lambda i: (drops[i][choice[i]], nll[i][choice[i]]))
        allowed[worst][choice[worst]] = False
    if mix is None:
        mix = list(keep_idx)

    # 5. whole models: the mix, the uniform ones within the budget, the input
    names = [kd.name for kd in kinds[0] if not kd.keep]
    contenders = {"input": list(keep_idx), "mix": mix}
    for name in names:
        idx = [next((c for c, kd in enumerate(ks) if kd.name == name), None) for ks in kinds]
        if all(c is not None for c in idx):
            contenders[f"uniform {name}"] = idx
    summed = {name: sum(latency[keys_of[i][c]] for i, c in enumerate(ch)) for name, ch in contenders.items()}
    sizes = {}
    scores = {}
    for name, ch in contenders.items():
        m, a, _nll = evaluate(ch)
        sizes[name], scores[name] = m.nbytes, a
    ok = {name for name in contenders if acc0 - scores[name] <= budget + 1e-12} | {"input"}
    measured: dict = {}
    if objective == "latency":
        uniform = sorted((n for n in ok if n.startswith("uniform")), key=summed.get)[:_WHOLE_MODELS]
        timed_models = ["input", "mix", *[n for n in uniform if contenders[n] != mix]]
    else:
        smallest = min(ok, key=lambda n: (sizes[n], summed[n]))
        timed_models = list(dict.fromkeys(["input", smallest]))
    wanted = {tuple(contenders[n]) for n in timed_models} | {tuple(contenders[n]) for n in ok}
    for key in [key for key in built if key not in wanted]:
        del built[key]  # models no longer in the running
    x = rng.standard_normal((batch_size, model.linears[0].in_features)).astype(np.float32)
    bar = _progress_bar(repeats, "optimize: timing whole models", progress)
    whole = _time_models({n: evaluate(contenders[n])[0] for n in timed_models}, x, repeats, bar)
    bar.close()
    for n, s in whole.items():
        measured[n] = (statistics.median(s), min(s), max(s))
    if objective == "latency":
        final = min((n for n in timed_models if n in ok), key=lambda n: measured[n][0])
    else:
        final = smallest
    result, acc_final, _nll = evaluate(contenders[final])

    # the report
    layers = []
    final_choice = contenders[final]
    for i, layer in enumerate(linears):
        cands = []
        for c, kd in enumerate(kinds[i]):
            key = keys_of[i][c]
            cands.append({"name": kd.name, "format": timed[key][1], "activation_quant": kd.activation_quant,
                          "latency_s": latency[key], "bytes": timed[key][0], "accuracy": acc[i][c],
                          "accuracy_drop": drops[i][c]})
        pick = cands[final_choice[i]]
        stored = result.linears[i]
        layers.append({"layer": i, "shape": tuple(int(s) for s in layer.weight.shape), "candidates": cands,
                       "choice": pick["name"], "format": stored.format, "activation_quant": stored.activation_quant,
                       "latency_s": pick["latency_s"], "bytes": stored.nbytes, "accuracy_drop": pick["accuracy_drop"]})
    models = [{"name": n, "accuracy": scores[n], "bytes": sizes[n],
               "latency_s": measured[n][0] if n in measured else summed[n], "measured": n in measured,
               "within_budget": n in ok, "chosen": n == final} for n in contenders]

    def whole_figures(name, a):
        med, lo, hi = measured[name]
        return {"accuracy": a, "latency_s": med, "latency_range_s": (lo, hi), "bytes": sizes[name]}

    result.report = OptimizeReport(
        layers, before=whole_figures("input", acc0), after=whole_figures(final, acc_final), models=models,
        settings={"batch_size": batch_size, "objective": objective, "max_accuracy_drop": budget,
                  "sparsities": sparsities, "candidates": families, "finetune_epochs": finetune_epochs,
                  "repeats": repeats, "cold": cold, "host": host, "choice": final})
    if plot is not None:
        result.report.plot(plot)
    return result


def _threads() -> int:
    import numba

    return int(numba.get_num_threads())
