"""PyTorch conversion: ``MLP.from_torch`` against torch's own forward, and every model it must refuse.

The reference is the torch module itself: ``module(torch.from_numpy(x))``.
"""

import numpy as np
import pytest

from numaccel import nn

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch

t = torch.nn


def _torch_forward(module, x) -> np.ndarray:
    with torch.no_grad():
        return module(torch.from_numpy(x)).double().numpy()


def _seeded(make):
    def build():
        torch.manual_seed(0)
        return make().eval()

    return build


class _SequentialSubclass(t.Sequential):
    """Changes only the constructor: its forward is Sequential's."""


def _shared_activation():
    act = t.ReLU()
    return t.Sequential(t.Linear(6, 8), act, t.Linear(8, 5), act, t.Linear(5, 3))


def _shared_linear():
    lin = t.Linear(6, 6)
    return t.Sequential(lin, t.GELU(), lin, t.ReLU(), t.Linear(6, 3))


def _weight_normed():
    return t.Sequential(t.utils.parametrizations.weight_norm(t.Linear(6, 7)), t.ReLU(), t.Linear(7, 3))


MODULES = {
    "relu": lambda: t.Sequential(t.Linear(6, 9), t.ReLU(), t.Linear(9, 4)),
    "gelu": lambda: t.Sequential(t.Linear(6, 9), t.GELU(), t.Linear(9, 4)),
    "gelu-tanh": lambda: t.Sequential(t.Linear(6, 9), t.GELU(approximate="tanh"), t.Linear(9, 4)),
    "mixed-per-layer": lambda: t.Sequential(t.Flatten(), t.Linear(6, 9), t.GELU(), t.Dropout(0.3),
                                            t.Linear(9, 4, bias=False), t.ReLU(), t.Identity(), t.Linear(4, 2)),
    "nested": lambda: t.Sequential(t.Sequential(t.Linear(6, 8), t.GELU()),
                                   t.Sequential(t.Linear(8, 5), t.ReLU(), t.Sequential(t.Linear(5, 3)))),
    "bare-linear": lambda: t.Linear(6, 4),
    "linear-no-bias": lambda: t.Linear(6, 4, bias=False),
    "low-rank": lambda: t.Sequential(t.Linear(6, 2, bias=False), t.Linear(2, 5), t.ReLU(), t.Linear(5, 3)),
    "trailing-activation": lambda: t.Sequential(t.Linear(6, 5), t.GELU(), t.Linear(5, 3), t.ReLU()),
    "shared-activation": _shared_activation,
    "shared-linear": _shared_linear,
    "sequential-subclass": lambda: _SequentialSubclass(t.Linear(6, 5), t.ReLU(), t.Linear(5, 2)),
    "weight-norm": _weight_normed,
}


@pytest.mark.parametrize("name", list(MODULES))
@pytest.mark.parametrize("batch", [1, 7], ids=lambda b: f"{b=}")
def test_module_matches_torch_forward(rng, parity, name, batch):
    module = _seeded(MODULES[name])()
    x = rng.standard_normal((batch, 6)).astype(np.float32)
    net = nn.MLP.from_torch(module)
    assert isinstance(net, nn.MLP)
    y = net(x)
    assert y.dtype == np.float32
    parity(y, _torch_forward(module, x))


def test_layers_and_activations_kept_where_they_stand():
    net = nn.MLP.from_torch(_seeded(MODULES["mixed-per-layer"])())
    assert [repr(layer) for layer in net.layers] == [
        "Linear(6, 9, format='dense')", "GELU(approximate='none')", "Linear(9, 4, format='dense')", "ReLU()",
        "Linear(4, 2, format='dense')"]
    assert net.linears[1].bias is None
    tanh = nn.MLP.from_torch(_seeded(MODULES["gelu-tanh"])())
    assert tanh.layers[1].approximate == "tanh"
    shared = nn.MLP.from_torch(_seeded(MODULES["shared-activation"])())
    assert [type(layer).__name__ for layer in shared.layers] == ["Linear", "ReLU", "Linear", "ReLU", "Linear"]


def test_one_vector_input(rng, parity):
    module = _seeded(MODULES["gelu"])()
    x = rng.standard_normal(6).astype(np.float32)
    parity(nn.MLP.from_torch(module)(x), _torch_forward(module, x))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_half_precision_weights_widen_exactly(rng, parity, dtype):
    module = _seeded(MODULES["relu"])().to(dtype)
    net = nn.MLP.from_torch(module)
    assert all(layer.weight.dtype == np.float32 for layer in net.linears)
    x = rng.standard_normal((4, 6)).astype(np.float32)
    parity(net(x), _torch_forward(module.float(), x))


def test_model_holds_copies(rng, parity):
    module = _seeded(MODULES["relu"])()
    x = rng.standard_normal((3, 6)).astype(np.float32)
    ref = _torch_forward(module, x)
    net = nn.MLP.from_torch(module)
    with torch.no_grad():
        module[0].weight.zero_()
    parity(net(x), ref)


@pytest.mark.parametrize("name,activation", [("relu", "relu"), ("gelu", "gelu"), ("gelu-tanh", "gelu_tanh")])
def test_state_dict_with_explicit_activation(rng, parity, name, activation):
    module = _seeded(MODULES[name])()
    x = rng.standard_normal((5, 6)).astype(np.float32)
    net = nn.MLP.from_torch(module.state_dict(), activation=activation)
    parity(net(x), _torch_forward(module, x))


class _ReluInForward(t.Module):
    """Two Linear children and a torch.relu between them that only forward() knows of."""

    def __init__(self):
        super().__init__()
        self.fc1 = t.Linear(6, 8)
        self.fc2 = t.Linear(8, 3)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)))


def test_custom_module_is_refused_and_its_state_dict_converts(rng, parity):
    module = _seeded(_ReluInForward)()
    with pytest.raises(TypeError, match=r"_ReluInForward, not a torch\.nn\.Sequential.*state_dict\(\).*activation="):
        nn.MLP.from_torch(module)
    x = rng.standard_normal((4, 6)).astype(np.float32)
    parity(nn.MLP.from_torch(module.state_dict(), activation="relu")(x), _torch_forward(module, x))


def test_state_dict_without_activation_is_refused():
    sd = _seeded(MODULES["gelu"])().state_dict()
    with pytest.raises(TypeError, match="activation is required for a state_dict of 2 layers"):
        nn.MLP.from_torch(sd)


def test_activation_given_for_a_module(rng, parity):
    module = _seeded(MODULES["gelu"])()
    x = rng.standard_normal((3, 6)).astype(np.float32)
    parity(nn.MLP.from_torch(module, activation="gelu")(x), _torch_forward(module, x))
    assert len(nn.MLP.from_torch(t.Linear(3, 2), activation="relu").layers) == 1


class _OwnForward(t.Sequential):
    def forward(self, x):
        return super().forward(x) + x


class _LinearOwnForward(t.Linear):
    def forward(self, x):
        return super().forward(x) * 2


class _Custom(t.Module):
    def forward(self, x):
        return x


def _hooked():
    lin = t.Linear(4, 4)
    lin.register_forward_hook(lambda mod, inp, out: out * 0)
    return t.Sequential(lin, t.ReLU())


def _hooked_container():
    seq = t.Sequential(t.Linear(4, 4))
    seq.register_forward_pre_hook(lambda mod, inp: (inp[0] * 2,))
    return seq


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda: t.Sequential(t.Linear(4, 4), t.Sigmoid()), r"module\[1\] is a Sigmoid"),
        (lambda: t.Sequential(t.Linear(4, 4), t.Sequential(t.LayerNorm(4), t.Linear(4, 2))),
         r"module\[1\]\[0\] is a LayerNorm"),
        (lambda: t.Sequential(t.Linear(4, 4), _Custom()), r"module\[1\] is a _Custom"),
        (lambda: t.Sequential(t.Conv1d(1, 1, 1)), r"module\[0\] is a Conv1d"),
        (lambda: t.Sequential(t.Linear(4, 4), t.LeakyReLU()), r"module\[1\] is a LeakyReLU"),
        (lambda: t.Sequential(t.Linear(4, 4), t.Flatten(), t.Linear(4, 2)),
         r"module\[1\] is a Flatten\(start_dim=1, end_dim=-1\) after another layer"),
        (lambda: t.Sequential(t.Flatten(0), t.Linear(4, 2)), r"module\[0\] is a Flatten\(start_dim=0, end_dim=-1\);"),
        (lambda: t.Sequential(t.Linear(4, 4), _OwnForward(t.ReLU())), r"module\[1\] is a _OwnForward with its own"),
        (lambda: t.Sequential(_LinearOwnForward(4, 4)), r"module\[0\] is a _LinearOwnForward with its own"),
        (_hooked, r"module\[0\] is a Linear with its own forward\(\) or with forward hooks"),
        (lambda: _OwnForward(t.Linear(4, 4)), r"module is a _OwnForward with its own forward"),
        (_hooked_container, r"module is a Sequential with its own forward\(\) or with forward hooks"),
        (lambda: t.ModuleList([t.Linear(4, 4)]), r"module is a ModuleList, not a torch\.nn\.Sequential"),
        (lambda: t.ReLU(), r"module is a ReLU, not"),
        (lambda: t.Sequential(t.Linear(4, 4)).double(), r"module\[0\]\.weight is float64.*module\.float\(\)"),
    ],
    ids=["sigmoid", "nested-layernorm", "custom-child", "conv", "leaky-relu", "flatten-inside",
         "flatten-dim0", "sequential-own-forward", "linear-own-forward", "hook", "top-own-forward",
         "top-pre-hook", "module-list", "bare-activation", "float64"],
)
def test_unsupported_modules_are_type_errors(make, match):
    with pytest.raises(TypeError, match=match):
        nn.MLP.from_torch(make())


def _nan_weight():
    lin = t.Linear(4, 4)
    with torch.no_grad():
        lin.weight[1, 2] = float("nan")
    return t.Sequential(lin)


@pytest.mark.parametrize(
    "make,activation,match",
    [
        (lambda: t.Sequential(t.Linear(4, 4), t.ReLU(), t.ReLU(), t.Linear(4, 2)), None,
         r"module\[2\] \(ReLU\(\)\) follows the activation module\[1\]"),
        (lambda: t.Sequential(t.Linear(4, 4), t.GELU(), t.Dropout(), t.Sequential(t.ReLU()), t.Linear(4, 2)), None,
         r"module\[3\]\[0\] .* follows the activation module\[1\]"),
        (lambda: t.Sequential(t.ReLU()), None, "no Linear layer"),
        (lambda: t.Sequential(), None, "no Linear layer"),
        (lambda: t.Sequential(t.Linear(3, 4), t.ReLU(), t.Linear(5, 2)), None,
         r"module\[2\] takes 5 features but module\[0\] gives 4"),
        (lambda: t.Sequential(t.Linear(4, 4), t.GELU(), t.Linear(4, 2)), "relu",
         r"activation='relu' does not match the module: module\[1\] is GELU"),
        (lambda: t.Sequential(t.Linear(4, 4), t.GELU(), t.Linear(4, 2)), "gelu_tanh", r"module\[1\] is GELU"),
        (lambda: t.Sequential(t.Linear(4, 4), t.Linear(4, 2)), "relu",
         r"module\[0\] and module\[1\] are Linear layers with no activation between"),
        (lambda: t.Sequential(t.Linear(4, 4), t.ReLU()), "relu", r"module\[1\] \(ReLU\(\)\) follows the last Linear"),
        (lambda: t.Sequential(t.ReLU(), t.Linear(4, 4)), "relu", r"module\[0\] .* before the first Linear"),
        (lambda: t.Sequential(t.Linear(4, 4)), "tanh", "activation must be"),
        (_nan_weight, None, r"module\[0\]\.weight.*finite|weight.*finite"),
    ],
    ids=["relu-relu", "gelu-dropout-relu-nested", "no-linear", "empty", "chain", "activation-mismatch",
         "gelu-approximate-mismatch", "no-activation-between", "trailing", "leading", "unknown-activation",
         "nan-weight"],
)
def test_inconsistent_modules_are_value_errors(make, activation, match):
    with pytest.raises(ValueError, match=match):
        nn.MLP.from_torch(make(), activation=activation)


def test_float64_state_dict_is_refused():
    sd = t.Linear(4, 2).double().state_dict()
    with pytest.raises(TypeError, match=r"state_dict\['weight'\] is float64"):
        nn.MLP.from_torch(sd)
    net = nn.MLP.from_torch({k: v.float() for k, v in sd.items()})
    assert net.linears[0].weight.dtype == np.float32


def test_integer_tensor_is_refused():
    with pytest.raises(TypeError, match=r"state_dict\['weight'\] must be a floating-point tensor, got int32"):
        nn.MLP.from_torch({"weight": torch.ones((2, 2), dtype=torch.int32)})


def test_meta_tensors_are_refused_naming_the_tensor():
    with pytest.raises(TypeError, match=r"state_dict\['0.weight'\] is a meta tensor"):
        nn.MLP.from_torch({"0.weight": torch.ones(2, 3, device="meta")})
