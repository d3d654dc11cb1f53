"""numaccel.optimize: the choice, the budget, the report, the command. No timing is asserted here.

Decisions are tested with the timers replaced by deterministic stand-ins (a candidate "takes" its bytes),
so that the test knows which model must win; the real timers run in the smoke tests.
"""

import itertools

import numpy as np
import pytest

import numaccel as na
from numaccel import _config, formats
from numaccel import optimization as opt_mod


@pytest.fixture(scope="module")
def task():
    rng = np.random.default_rng(0)
    centers = rng.normal(scale=2.0, size=(3, 24))
    labels = rng.integers(0, 3, size=900)
    X = (centers[labels] + rng.normal(size=(900, 24))).astype(np.float32)
    net = na.train(na.nn.MLP.init([24, 48, 48, 3], seed=0), X[:600], labels[:600], epochs=15, lr=3e-3, seed=0)
    return net, (X[:600], labels[:600]), (X[600:], labels[600:])


def _by_bytes(monkeypatch, mixed_penalty=1.0):
    """Replace both timers: a layer candidate takes its weight's bytes in ns, a model its bytes in ns
    (times ``mixed_penalty`` when its layers are of more than one format)."""

    def layers(cands, repeats, cold_llc, bar):
        return {k: [formats.nbytes(v[0]) * 1e-9] * repeats for k, v in cands.items()}

    def models(ms, x, repeats, bar):
        out = {}
        for name, m in ms.items():
            kinds = {(layer.format, layer.activation_quant) for layer in m.linears}
            out[name] = [m.nbytes * 1e-9 * (mixed_penalty if len(kinds) > 1 else 1.0)] * repeats
        return out

    monkeypatch.setattr(opt_mod, "_time_layers", layers)
    monkeypatch.setattr(opt_mod, "_time_models", models)


def _accuracy(model, data):
    X, y = data
    return float((model.predict(X) == y).mean())


def test_real_timers_smoke(task):
    net, _, val = task
    before = [layer.weight.copy() for layer in net.linears]
    opt = na.optimize(net, val, max_accuracy_drop=0.02, repeats=1, sparsities=(0.5, 0.9))
    rep = opt.report
    assert isinstance(rep, opt_mod.OptimizeReport) and isinstance(rep, list)
    assert len(rep) == len(net.linears)
    for row in rep:
        names = [c["name"] for c in row["candidates"]]
        assert row["choice"] in names
        assert {"dense", "int8", "int8-w8a8", "csr-50%", "csr-int8-90%", "csr-int8-90%-w8a8"} <= set(names)
        for c in row["candidates"]:
            assert c["latency_s"] > 0 and c["bytes"] > 0 and 0 <= c["accuracy"] <= 1
    assert sum(m["chosen"] for m in rep.models) == 1
    assert rep.after["accuracy"] == pytest.approx(_accuracy(opt, val))
    assert rep.after["accuracy"] >= rep.before["accuracy"] - 0.02 - 1e-12
    assert rep.before["accuracy"] == pytest.approx(_accuracy(net, val))
    lo, hi = rep.after["latency_range_s"]
    assert lo <= rep.after["latency_s"] <= hi
    assert "| layer |" in rep.table() and rep.settings["host"]
    for w, layer in zip(before, net.linears, strict=True):  # the input model is untouched
        assert layer.weight is not None and np.array_equal(w, layer.weight)
    assert opt is not net


def test_cold_timing_path(task, monkeypatch):
    net, _, val = task
    monkeypatch.setattr(_config, "llc_bytes", lambda: 4096)  # every model "exceeds" a 4 KiB cache
    opt = na.optimize(net, val, repeats=1, sparsities=(0.9,), candidates=("int8", "csr"))
    assert opt.report.settings["cold"] is True
    assert {c["name"] for c in opt.report[0]["candidates"]} == {"dense", "int8", "csr-90%"}


def test_latency_choice_is_fastest_within_budget(task, monkeypatch):
    _by_bytes(monkeypatch)
    net, _, val = task
    budget = 0.03
    opt = na.optimize(net, val, max_accuracy_drop=budget, repeats=2)
    rep = opt.report
    a0 = rep.before["accuracy"]
    assert _accuracy(opt, val) >= a0 - budget - 1e-12
    ok = [m for m in rep.models if m["within_budget"] and m["measured"]]
    chosen = next(m for m in rep.models if m["chosen"])
    assert chosen["latency_s"] == min(m["latency_s"] for m in ok)
    # every uniform model within the budget is at least as slow as the choice (all of them by their bytes)
    for m in rep.models:
        if m["within_budget"] and m["name"].startswith("uniform"):
            assert chosen["bytes"] <= m["bytes"]


def test_mix_kept_only_if_faster_whole(task, monkeypatch):
    _by_bytes(monkeypatch, mixed_penalty=50.0)  # any mix of formats is slow as a whole model
    net, _, val = task
    opt = na.optimize(net, val, max_accuracy_drop=0.05, repeats=1)
    chosen = next(m for m in opt.report.models if m["chosen"])
    assert chosen["name"] != "mix" or len({(layer.format, layer.activation_quant) for layer in opt.linears}) == 1
    assert len({(layer.format, layer.activation_quant) for layer in opt.linears}) == 1


def test_objective_bytes_and_determinism(task, monkeypatch):
    net, _, val = task
    a = na.optimize(net, val, max_accuracy_drop=0.02, objective="bytes", repeats=1, seed=3)
    b = na.optimize(net, val, max_accuracy_drop=0.02, objective="bytes", repeats=1, seed=3)
    assert [r["choice"] for r in a.report] == [r["choice"] for r in b.report]
    for m in a.report.models:
        if m["within_budget"]:
            assert a.nbytes <= m["bytes"]
    assert a.nbytes < net.nbytes
    assert _accuracy(a, val) >= a.report.before["accuracy"] - 0.02 - 1e-12
    x = val[0][:5]
    np.testing.assert_array_equal(a(x), b(x))


def test_zero_budget_never_loses_accuracy(task, monkeypatch):
    _by_bytes(monkeypatch)
    net, _, val = task
    opt = na.optimize(net, val, max_accuracy_drop=0.0, repeats=1)
    assert _accuracy(opt, val) >= _accuracy(net, val)


def test_w8a8_layers_carry_their_activation_quant(task, monkeypatch, tmp_path):
    def layers(cands, repeats, cold_llc, bar):  # W8A8 "fastest", then int8, then the rest
        rank = {"int8": 2.0}
        return {k: [(1.0 if v[3] == "int8" else rank.get(formats.name_of(v[0]), 5.0)) * 1e-6] * repeats
                for k, v in cands.items()}

    def models(ms, x, repeats, bar):
        return {n: [sum(1.0 if layer.activation_quant else 5.0 for layer in m.linears) * 1e-6] * repeats
                for n, m in ms.items()}

    monkeypatch.setattr(opt_mod, "_time_layers", layers)
    monkeypatch.setattr(opt_mod, "_time_models", models)
    net, _, val = task
    opt = na.optimize(net, val, max_accuracy_drop=1.0, repeats=1, candidates=("int8", "int8-w8a8"))
    assert [layer.activation_quant for layer in opt.linears] == ["int8"] * 3
    assert [r["choice"] for r in opt.report] == ["int8-w8a8"] * 3
    x = val[0][:7]
    ref = net(x).astype(np.float64)
    got = opt(x)
    assert np.linalg.norm(got - ref) / np.linalg.norm(ref) < 0.05
    path = tmp_path / "m.safetensors"
    na.save(path, opt)
    back = na.load(path)
    assert [layer.activation_quant for layer in back.linears] == ["int8"] * 3
    np.testing.assert_array_equal(back(x), got)


def test_an_input_w8a8_model_is_kept_as_it_runs(task, monkeypatch):
    """The "as given" candidate of a W8A8 layer is the layer with its activation_quant: with no other
    candidate the result computes exactly what the input model computes, and compress keeps it too."""
    _by_bytes(monkeypatch)
    net, _, val = task
    w8a8 = na.nn.MLP([na.nn.Linear(na.quantize(layer.weight), layer.bias, activation_quant="int8")
                      if isinstance(layer, na.nn.Linear) else layer for layer in net.layers])
    opt = na.optimize(w8a8, val, max_accuracy_drop=0.0, repeats=1, candidates=(), sparsities=(),
                      objective="bytes")
    assert [(layer.format, layer.activation_quant) for layer in opt.linears] == [("int8", "int8")] * 3
    assert [r["activation_quant"] for r in opt.report] == ["int8"] * 3
    x = val[0][:9]
    np.testing.assert_array_equal(opt(x), w8a8(x))
    assert opt.report.before["accuracy"] == _accuracy(w8a8, val)
    same = na.compress(w8a8)  # no pruning, no int8: the same model
    assert [layer.activation_quant for layer in same.linears] == ["int8"] * 3
    np.testing.assert_array_equal(same(x), w8a8(x))
    again = na.compress(w8a8, int8=True, format="int8")
    assert [layer.activation_quant for layer in again.linears] == ["int8"] * 3
    assert [layer.activation_quant for layer in na.compress(w8a8, sparsity=0.5).linears] == [None] * 3  # csr


def test_finetuned_w8a8_candidates_are_scored_as_w8a8(task, monkeypatch):
    _by_bytes(monkeypatch)
    net, train, val = task
    scored = []
    real = opt_mod._scores

    def spy(model, X, y):
        scored.append([(layer.format, layer.activation_quant) for layer in model.linears])
        return real(model, X, y)

    monkeypatch.setattr(opt_mod, "_scores", spy)
    na.optimize(net, val, max_accuracy_drop=0.05, objective="bytes", repeats=1, candidates=("csr-int8", "int8-w8a8"),
                sparsities=(0.5,), train_data=train, finetune_epochs=1, steps=1)
    swapped = [m for m in scored if sum(f != "dense" for f, _ in m) == 1]
    assert ("csr-int8", "int8") in {pair for m in swapped for pair in m}, swapped


def test_finetuned_pruned_candidates(task, monkeypatch):
    _by_bytes(monkeypatch)
    net, train, val = task
    opt = na.optimize(net, val, max_accuracy_drop=0.02, objective="bytes", repeats=1, candidates=("csr",),
                      sparsities=(0.5, 0.8), train_data=train, finetune_epochs=2, steps=2)
    assert _accuracy(opt, val) >= opt.report.before["accuracy"] - 0.02 - 1e-12
    pruned = [layer for layer in opt.linears if layer.format == "csr"]
    assert pruned, "a 48-wide net loses nothing at 50 % sparsity after fine-tuning"
    for layer in pruned:
        assert formats.density(layer.weight) <= 0.5 + 1e-9


def test_knapsack_matches_brute_force():
    rng = np.random.default_rng(1)
    units = opt_mod._KNAPSACK_UNITS
    for _ in range(40):
        n_layers, n_cand = int(rng.integers(1, 4)), int(rng.integers(1, 5))
        budget = 0.02
        costs = rng.random((n_layers, n_cand)).tolist()
        drops = (rng.integers(-20, units // 2, size=(n_layers, n_cand)) * budget / units).tolist()
        allowed = (rng.random((n_layers, n_cand)) < 0.85).tolist()
        best = None
        for combo in itertools.product(range(n_cand), repeat=n_layers):
            if not all(allowed[i][c] for i, c in enumerate(combo)):
                continue
            if sum(max(0.0, drops[i][c]) for i, c in enumerate(combo)) <= budget + 1e-12:
                cost = sum(costs[i][c] for i, c in enumerate(combo))
                best = cost if best is None else min(best, cost)
        got = opt_mod._knapsack(costs, drops, budget, allowed)
        if best is None:
            assert got is None
        else:
            assert got is not None
            assert sum(costs[i][c] for i, c in enumerate(got)) == pytest.approx(best)
            assert sum(max(0.0, drops[i][c]) for i, c in enumerate(got)) <= budget + 1e-12


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        ({"data": (np.zeros((4, 24), np.float32),)}, TypeError, "pair"),
        ({"data": (np.zeros((4, 5), np.float32), np.zeros(4, np.int64))}, ValueError, "24 features"),
        ({"data": (np.zeros((4, 24), np.float32), np.full(4, 7))}, ValueError, r"class ids in \[0, 3\)"),
        ({"data": (np.zeros((4, 24), np.int32), np.zeros(4, np.int64))}, TypeError, "float32"),
        ({"max_accuracy_drop": 1.5}, ValueError, "max_accuracy_drop"),
        ({"batch_size": 0}, ValueError, "batch_size"),
        ({"objective": "speed"}, ValueError, "objective"),
        ({"sparsities": (0.5, 1.0)}, ValueError, "sparsities"),
        ({"candidates": ("fp16",)}, ValueError, "candidates"),
        ({"finetune_epochs": 2}, ValueError, "train_data"),
        ({"repeats": 0}, ValueError, "repeats"),
        ({"data": (np.full((4, 24), np.nan, np.float32), np.zeros(4, np.int64))}, ValueError, "NaN|finite"),
        ({"data": (np.zeros((0, 24), np.float32), np.zeros(0, np.int64))}, ValueError, "at least one row"),
        ({"data": (np.zeros((4, 24), np.float32), np.zeros(3, np.int64))}, ValueError, r"shape \(4,\)"),
        ({"train_data": (np.zeros((4, 7), np.float32), np.zeros(4, np.int64))}, ValueError, "24 features"),
        ({"candidates": "int8"}, ValueError, "candidates"),
    ],
)
def test_bad_arguments(task, kwargs, exc, match):
    net, _, val = task
    kw = {"data": val, **kwargs}
    with pytest.raises(exc, match=match):
        na.optimize(net, **kw)


def test_command_line(task, tmp_path, monkeypatch, capsys):
    from numaccel.cli import main

    _by_bytes(monkeypatch)
    net, _, (X, y) = task
    model_path, data_path, out = tmp_path / "net.safetensors", tmp_path / "val.npz", tmp_path / "opt.safetensors"
    na.save(model_path, net)
    np.savez(data_path, X=X, y=y)
    report = tmp_path / "report.md"
    rc = main(["optimize", str(model_path), str(data_path), "--out", str(out), "--repeats", "1",
               "--objective", "bytes", "--max-accuracy-drop", "0.02", "--report", str(report)])
    assert rc == 0
    back = na.load(out)
    assert back.nbytes < net.nbytes and "| layer |" in report.read_text()
    assert "saved" in capsys.readouterr().out
    bad = tmp_path / "bad.npz"
    np.savez(bad, X=X, labels=y)
    assert main(["optimize", str(model_path), str(bad), "--out", str(out)]) == 2
    assert "'X' and 'y'" in capsys.readouterr().err
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, X=X, y=np.array([object()] * len(y)))
    assert main(["optimize", str(model_path), str(pickled), "--out", str(out)]) == 2
    assert main(["optimize", str(tmp_path / "missing.safetensors"), str(data_path), "--out", str(out)]) == 2
    assert "No such file" in capsys.readouterr().err
    nowhere = tmp_path / "no-such-folder" / "opt.safetensors"  # refused before the search, not after it
    monkeypatch.setattr(opt_mod, "optimize", lambda *a, **k: pytest.fail("searched for an unwritable --out"))
    assert main(["optimize", str(model_path), str(data_path), "--out", str(nowhere)]) == 2
    assert "does not exist or is not writable" in capsys.readouterr().err


def test_candidate_kinds_per_layer():
    wide = na.nn.Linear(np.ones((8, 512), np.float32))
    names = [k.name for k in opt_mod._kinds(wide, opt_mod._FAMILIES, [0.5], 128)]
    assert names == ["dense", "int8", "int8-w8a8", "int8-g128", "int8-g128-w8a8", "csr-50%", "csr-int8-50%",
                     "csr-int8-50%-w8a8"]
    narrow = na.nn.Linear(na.quantize(np.ones((8, 200), np.float32)))
    names = [k.name for k in opt_mod._kinds(narrow, ("int8", "int8-group"), [0.5], 128)]
    assert names == ["as given (int8)", "dense", "int8"]  # no group of 128 in 200 features twice over
    kind = next(k for k in opt_mod._kinds(wide, opt_mod._FAMILIES, [], 128) if k.name == "int8-g128-w8a8")
    layer = na.nn.Linear(kind.build(np.ones((8, 512), np.float32)), activation_quant=kind.activation_quant)
    assert layer.weight.group_size == 128 and layer.activation_quant == "int8"
