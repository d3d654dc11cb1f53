"""``numaccel.tune``: time the planner's kernel variants on this host and keep the winners as wisdom.

Where hosts disagree on the fastest kernel, the planner has several that compute the same product
(:mod:`numaccel.plan.wisdom` lists the choices). By default it picks by host features; ``tune`` measures
instead, for the weights and batch sizes a user will run, and stores each winner in the wisdom file that
every later process on this host reads (FFTW's idea). No variant changes the numerics a call asked for:
activations are quantized only where the layer asks for W8A8 (``activation_quant="int8"``).
"""

from __future__ import annotations

import copy
import numbers
import statistics

import numpy as np

from . import _config, formats
from .formats import CSRInt8Weight, CSRWeight, Int8Weight
from .nn import Sequential
from .nn.containers import _as_model
from .ops import _dense_weight
from .optimization import _fmt_time, _time_cold, _time_interleaved
from .plan import amx, csr, dense, wisdom
from .plan import int8 as plan_int8
from .training import _progress_bar

__all__ = ["TuneReport", "tune"]

# A variant other than the host default is recorded only when its median beats the default's by this much:
# on a noisy machine two equal kernels would otherwise trade places from run to run.
MARGIN = 0.03


class TuneReport(list):
    """What :func:`tune` measured: one dict per choice and case, in the order timed.

    Each entry has ``choice``, ``case``, ``default`` (the host-feature choice), ``winner`` (what the wisdom
    now says) and ``times`` (``{variant: (median, min, max)}`` seconds per call). ``path`` is the wisdom
    file written (None when nothing was saved) and ``host`` the host key the entries are stored under.
    """

    def __init__(self, rows, *, path, host):
        super().__init__(rows)
        self.path = path
        self.host = host

    def table(self) -> str:
        """Return the report as a Markdown table, with the host line above it."""
        lines = [f"Host: {self.host}", "", "| choice | case | variant: median [min-max] per call | default | winner |",
                 "|---|---|---|---|---|"]
        for r in self:
            cells = "; ".join(f"{v}: {_fmt_time(m)} [{_fmt_time(lo)}-{_fmt_time(hi)}]"
                              for v, (m, lo, hi) in r["times"].items())
            lines.append(f"| {r['choice']} | {r['case']} | {cells} | {r['default']} | **{r['winner']}** |")
        return "\n".join(lines) + "\n"

    def __str__(self) -> str:
        """Return :meth:`table`."""
        return self.table()


def _weights_of(target, activation_quant):
    """``[(weight, activation_quant)]`` of a model's layers, one weight, or a sequence of weights."""
    if isinstance(target, (list, tuple)):
        out = []
        for t in target:
            out.extend(_weights_of(t, activation_quant))
        return out
    if isinstance(target, Sequential):
        model = _as_model(target)
        return [(layer.weight, layer.activation_quant) for layer in model.linears]
    if formats.spec_of(target) is None:
        raise TypeError(f"tune expects a model, a weight or a sequence of them, got {type(target).__name__}")
    if isinstance(target, np.ndarray):
        target = _dense_weight(target)  # what linear accepts
    return [(target, activation_quant)]


def _choices(w, aq, b: int):
    """``[(choice, case, default, variants)]`` that apply to ``w`` at batch ``b`` on this host."""
    x = np.empty((b, w.shape[1]), dtype=np.float32)
    out = []
    if isinstance(w, np.ndarray):
        if dense.gemv_possible(w, x):
            out.append(("dense-gemv", wisdom.case_key("dense", w.shape, b), dense.gemv_default(w, b),
                        ("blas", "gemv")))
    elif isinstance(w, (CSRWeight, CSRInt8Weight)) and b == 1:
        data = w.data if isinstance(w, CSRWeight) else w.qdata
        if csr.gemv_variant(w.shape, w.nnz, x.dtype, data.dtype) != "scalar":
            out.append(("csr-gemv", csr.gemv_case(w.shape, w.nnz, data.dtype), csr.gemv_default(),
                        ("lanes", "lanes-prefetch", "gather")))
    elif isinstance(w, Int8Weight):
        case = wisdom.case_key("int8", w.shape, b)
        if aq is None and plan_int8._USE_PANELS and b == 1:
            out.append(("int8-gemv", case, plan_int8.gemv_default(), ("panels", "streams")))
        if aq is None and plan_int8._USE_PANELS and b > 1:
            variants = ("tiles", "convert", "blas") if plan_int8.blas_possible() else ("tiles", "convert")
            out.append(("int8-panels", case, plan_int8.panels_default(b, w.shape[0]), variants))
        if aq == "int8" and plan_int8._USE_VNNI and plan_int8._USE_PANELS and b == 1:
            out.append(("w8a8-gemv", case, plan_int8.gemv_default(), ("panels", "streams")))
        if aq == "int8" and amx.possible(w):
            out.append(("int8-w8a8", case, amx.default_variant(b), ("vnni", "amx")))
    return out


def tune(target, batch_sizes=(1, 64), *, activation_quant=None, repeats: int = 5, cold: bool = True,
         save: bool = True, progress: bool = False, seed: int = 0) -> TuneReport:
    """Time the kernel variants for ``target``'s weights on this host and store the winners as wisdom.

    Parameters
    ----------
    target : model, weight or sequence of them
        A ``numaccel.nn`` model (each ``Linear`` layer's weight, with its own ``activation_quant``), a
        weight of any registered format, or a list of them.
    batch_sizes : sequence of int
        Activation rows to tune for. The wisdom applies to batches that round up to the same power of two.
    activation_quant : None or "int8"
        For weights passed directly: tune their W8A8 form (``"int8"``) instead of weight-only.
    repeats : int
        Interleaved rounds; each variant's figure is the median of its samples over all rounds.
    cold : bool
        Rotate every candidate through copies that exceed twice the last-level cache, as a large model's
        layers are met (default); False times hot weights.
    save : bool
        Write the winners to the wisdom file (``numaccel.plan.wisdom.path()``); False keeps them in this
        process only.
    progress : bool
        Show a progress bar.
    seed : int
        Seed of the random activations.

    Returns
    -------
    TuneReport
        One row per choice and case, with every variant's time and the winner.

    Notes
    -----
    A variant other than the host default wins only when its median is at least 3 % faster (``MARGIN``),
    so that a rerun on a noisy machine does not flip ties. Cases are keyed by format, shape, batch
    (rounded up to a power of two) and density; the file by CPU model, logical CPUs and numaccel version.
    """
    if isinstance(batch_sizes, numbers.Integral):
        batch_sizes = (batch_sizes,)
    try:
        batches = [int(b) for b in batch_sizes]
    except (TypeError, ValueError):
        raise TypeError(f"batch_sizes must be a sequence of positive ints, got {batch_sizes!r}") from None
    if not batches or any(b < 1 or b != bs for b, bs in zip(batches, batch_sizes, strict=True)):
        raise ValueError(f"batch_sizes must be a non-empty sequence of positive ints, got {batch_sizes!r}")
    if activation_quant not in (None, "int8"):
        raise ValueError(f"activation_quant must be None or 'int8', got {activation_quant!r}")
    if isinstance(repeats, bool) or not isinstance(repeats, numbers.Integral) or repeats < 1:
        raise ValueError(f"repeats must be a positive int, got {repeats!r}")
    items = _weights_of(target, activation_quant)
    rng = np.random.default_rng(seed)
    jobs = []  # (choice, case, default, variants, weight, x, aq)
    seen = set()
    for w, aq in items:
        for b in batches:
            for choice, case, default, variants in _choices(w, aq, b):
                if (choice, case) in seen:
                    continue
                seen.add((choice, case))
                x = rng.standard_normal((b, w.shape[1])).astype(np.float32)
                jobs.append((choice, case, default, variants, w, x, aq))
    llc = _config.llc_bytes() if cold else 0
    rows, winners = [], {}
    bar = _progress_bar(len(jobs) * repeats, "tune", progress)
    for choice, case, default, variants, w, x, aq in jobs:
        cands, force = {}, {}
        for v in variants:
            wv = copy.deepcopy(w)  # each variant its own copy: packed layouts are cached per weight
            cands[v] = (wv, None, x, aq, choice == "dense-gemv" and v == "blas")
            force[v] = {choice: v}
        if llc:
            samples = _time_cold(cands, repeats, llc, bar, run=lambda key, force=force: wisdom.forced(force[key]))
        else:
            samples = _time_hot(cands, repeats, force, bar)
        times = {v: (statistics.median(s), min(s), max(s)) for v, s in samples.items()}
        best = min(times, key=lambda v: times[v][0])
        winner = best if best == default or times[best][0] <= (1 - MARGIN) * times[default][0] else default
        winners.setdefault(choice, {})[case] = winner
        rows.append({"choice": choice, "case": case, "default": default, "winner": winner, "times": times})
    if hasattr(bar, "close"):
        bar.close()
    path = wisdom.record(winners, save=save) if winners else None
    return TuneReport(rows, path=path, host=wisdom.host_key())


def _time_hot(cands: dict, repeats: int, force: dict, bar) -> dict:
    """Seconds per call of each candidate on one hot weight, interleaved: ``{key: [samples]}``."""
    from .ops import linear

    def call(key):
        w, b, x, aq, _ = cands[key]

        def fn():
            with wisdom.forced(force[key]):
                linear(x, w, b, activation_quant=aq)

        return fn

    return _time_interleaved({k: call(k) for k in cands}, {k for k, v in cands.items() if v[4]}, repeats, bar)
