"""Conversion from PyTorch: ``torch.nn.Sequential`` / ``torch.nn.Linear`` modules and ``state_dict`` mappings.

torch is imported only when a module is given; a ``state_dict`` of NumPy arrays converts without it. The
public entry point is :meth:`numaccel.nn.MLP.from_torch`.
"""

from __future__ import annotations

import numpy as np

from .layers import GELU, Linear, ReLU, _activation, _activation_name


def _convert(module, activation) -> list | None:
    """Return the layers of a torch module, or None for a mapping (a ``state_dict``); raise otherwise."""
    if activation is not None:
        _activation(activation)  # an unknown name is refused even where it would not be used
    if hasattr(module, "named_children") and hasattr(module, "state_dict"):
        import torch  # an nn.Module was given, so torch is installed

        if not isinstance(module, torch.nn.Module):
            raise TypeError(f"module must be a torch.nn.Module or a state_dict, got {type(module).__name__}")
        pairs = _layers_from_torch(module, torch)
        if activation is not None:
            _check_activation_matches(pairs, activation)
        return [layer for _, layer in pairs]
    if not hasattr(module, "items"):
        raise TypeError(
            f"module must be a torch.nn.Sequential, a torch.nn.Linear or a state_dict, got "
            f"{type(module).__name__}"
        )
    return None


_TORCH_WAYS_OUT = (
    "rebuild it as a torch.nn.Sequential of Linear, ReLU and GELU layers, or pass its state_dict() with the "
    "activation it applies between its Linear layers, e.g. MLP.from_torch(net.state_dict(), activation='relu') "
    "(the Linear layers are then taken in the order the state_dict lists them)"
)


def _to_numpy(t, name: str) -> np.ndarray:
    """Copy a torch tensor or an array to a new float32 NumPy array (without importing torch).

    float16 and bfloat16 widen exactly; float64 (and anything wider) is a ``TypeError``: nothing is downcast
    silently. ``name`` says which tensor, in the message.
    """
    if hasattr(t, "detach"):  # a torch tensor
        if getattr(t, "is_meta", False):
            raise TypeError(f"{name} is a meta tensor, which holds no values; load or initialise the "
                            f"module's weights first (e.g. module.to_empty(device='cpu') and a state_dict)")
        t = t.detach().cpu()
        if t.is_floating_point() and t.element_size() < 4:
            t = t.float()  # exact; NumPy has no bfloat16
        t = t.numpy()
    a = np.asarray(t)
    if a.dtype.kind != "f":
        raise TypeError(f"{name} must be a floating-point tensor, got {a.dtype}")
    if a.dtype.itemsize > 4:
        raise TypeError(
            f"{name} is {a.dtype}; the converted model holds float32 weights and does not downcast silently: "
            f"convert first with module.float() (for a state_dict: {{k: v.float() for k, v in sd.items()}})"
        )
    return np.array(a, dtype=np.float32)  # a copy: the model never shares memory with torch


def _torch_plain(child, cls) -> bool:
    """``child`` is a ``cls`` computing what ``cls`` computes: no overridden ``forward``, no forward hooks."""
    return (isinstance(child, cls) and type(child).forward is cls.forward
            and not getattr(child, "_forward_hooks", None) and not getattr(child, "_forward_pre_hooks", None))


def _torch_leaves(module, where: str, torch, out: list) -> list:
    """``(where, child)`` for every child of a (nested) Sequential, in the order its forward calls them."""
    # Iterate the Sequential itself, as its forward does: named_children() yields a module used twice only once.
    for i, child in enumerate(module):
        label = f"{where}[{i}]"
        if _torch_plain(child, torch.nn.Sequential):
            _torch_leaves(child, label, torch, out)
        else:
            out.append((label, child))
    return out


def _layers_from_torch(module, torch) -> list:
    """``(label, layer)`` pairs of numaccel layers computing what ``module`` computes; raises where they cannot."""
    nn_ = torch.nn
    if _torch_plain(module, nn_.Sequential):
        leaves = _torch_leaves(module, "module", torch, [])
    elif _torch_plain(module, nn_.Linear):
        leaves = [("module", module)]
    else:
        kind = type(module).__name__
        if isinstance(module, (nn_.Sequential, nn_.Linear)):
            why = f"a {kind} with its own forward() or with forward hooks"
        else:
            why = f"a {kind}, not a torch.nn.Sequential or torch.nn.Linear"
        raise TypeError(f"module is {why}: a conversion cannot see what its forward() computes; {_TORCH_WAYS_OUT}")
    pairs = []
    last_linear = None  # (label, out_features) of the latest Linear
    last_activation = None  # label of an activation with no Linear after it yet
    for label, child in leaves:
        kind = type(child).__name__
        if _torch_plain(child, nn_.Linear):
            weight = _to_numpy(child.weight, f"{label}.weight")
            bias = None if child.bias is None else _to_numpy(child.bias, f"{label}.bias")
            layer = Linear(weight, bias)
            if last_linear is not None and layer.in_features != last_linear[1]:
                raise ValueError(
                    f"{label} takes {layer.in_features} features but {last_linear[0]} gives {last_linear[1]}"
                )
            last_linear, last_activation = (label, layer.out_features), None
        elif _torch_plain(child, nn_.ReLU) or _torch_plain(child, nn_.GELU):
            layer = ReLU() if isinstance(child, nn_.ReLU) else GELU(approximate=child.approximate)
            if last_activation is not None:
                raise ValueError(
                    f"{label} ({layer!r}) follows the activation {last_activation} with no Linear layer between; "
                    f"an MLP applies at most one activation between Linear layers: remove one of them"
                )
            last_activation = label
        elif _torch_plain(child, nn_.Identity) or _torch_plain(child, nn_.Dropout):
            continue  # identities at inference
        elif _torch_plain(child, nn_.Flatten) and (child.start_dim, child.end_dim) == (1, -1) and not pairs:
            continue  # before any layer: the identity on the (B, K) inputs the converted model takes
        else:
            if isinstance(child, (nn_.Linear, nn_.ReLU, nn_.GELU, nn_.Identity, nn_.Dropout, nn_.Sequential)):
                kind = f"{kind} with its own forward() or with forward hooks"
            elif isinstance(child, nn_.Flatten):
                kind = f"Flatten(start_dim={child.start_dim}, end_dim={child.end_dim})"
                kind += " after another layer" if pairs else ""
            raise TypeError(
                f"{label} is a {kind}; a conversion takes Linear, ReLU, GELU, Identity and Dropout (the identity "
                f"at inference), nested Sequential containers and a leading Flatten(); replace or remove it"
            )
        pairs.append((label, layer))
    if last_linear is None:
        raise ValueError("module has no Linear layer; an MLP needs at least one")
    return pairs


def _check_activation_matches(pairs, activation) -> None:
    """``activation=`` given with a module: the module must be what ``from_arrays(..., activation=)`` builds."""
    want = _activation_name(_activation(activation))
    fail = f"activation={activation!r} does not match the module"
    fix = "leave activation out to take the module's activations as they are"
    prev = None
    for i, (label, layer) in enumerate(pairs):
        is_linear = isinstance(layer, Linear)
        if i % 2 == 0 and not is_linear:  # only i == 0: two activations in a row were refused before
            raise ValueError(f"{fail}: {label} ({layer!r}) comes before the first Linear layer; {fix}")
        if i % 2 == 1 and is_linear:
            raise ValueError(f"{fail}: {prev} and {label} are Linear layers with no activation between; {fix}")
        if not is_linear and _activation_name(layer) != want:
            raise ValueError(f"{fail}: {label} is {layer!r}; {fix}")
        prev = label
    if not isinstance(pairs[-1][1], Linear):
        raise ValueError(f"{fail}: {pairs[-1][0]} ({pairs[-1][1]!r}) follows the last Linear layer; {fix}")


def _layers_from_state_dict(state_dict, activation) -> tuple[list, list]:
    """Weights and biases of a state_dict's ``<layer>.weight`` / ``<layer>.bias`` pairs, in the order listed."""
    groups: dict[str, dict] = {}
    for key, value in state_dict.items():
        prefix, _, leaf = str(key).rpartition(".")
        if leaf not in ("weight", "bias"):
            raise ValueError(f"state_dict key {key!r} is not a '<layer>.weight' or '<layer>.bias' entry")
        groups.setdefault(prefix, {})[leaf] = (key, value)
    if not groups:
        raise ValueError("state_dict is empty; it must hold at least one '<layer>.weight' entry")
    if len(groups) > 1 and activation is None:
        raise TypeError(
            f"activation is required for a state_dict of {len(groups)} layers: a state_dict holds no "
            f"activations; pass the one the model applies between its Linear layers (activation='relu', "
            f"'gelu' or 'gelu_tanh'), or convert the torch.nn.Sequential itself"
        )
    weights, biases = [], []
    prev = None  # (key, out_features)
    for prefix, entry in groups.items():
        if "weight" not in entry:
            weight_key = f"{prefix}.weight" if prefix else "weight"
            raise ValueError(f"state_dict has {entry['bias'][0]!r} but no {weight_key!r}")
        key, value = entry["weight"]
        w = _to_numpy(value, f"state_dict[{key!r}]")
        if w.ndim != 2:
            raise ValueError(
                f"state_dict[{key!r}] has shape {w.shape}; a Linear weight is 2-D (out_features, in_features): "
                f"a state_dict converts only when it holds Linear layers alone"
            )
        if prev is not None and w.shape[1] != prev[1]:
            raise ValueError(f"state_dict[{key!r}] takes {w.shape[1]} features but {prev[0]!r} gives {prev[1]}")
        prev = (key, w.shape[0])
        weights.append(w)
        if "bias" in entry:
            key, value = entry["bias"]
            biases.append(_to_numpy(value, f"state_dict[{key!r}]"))
        else:
            biases.append(None)
    return weights, biases
