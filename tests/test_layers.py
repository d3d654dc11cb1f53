"""The import graph runs one way (design.md, "Layers of the code"): every numaccel module imports only
from the layers below it; the few imports made inside functions (lazily, to keep optional dependencies
optional) are listed here by name."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "numaccel"

# group of a module -> groups it may import at module level
ALLOWED = {
    "_config": set(),
    "_validate": {"_config"},
    "_kernels": {"_config"},
    "formats": {"_config", "_validate"},
    "plan": {"_config", "_validate", "formats", "_kernels"},
    "_cuda": {"_config", "_validate", "formats", "plan", "_kernels"},
    "ops": {"_config", "_validate", "formats", "plan"},
    "pruning": {"_validate", "formats"},
    "quantization": {"_validate", "formats"},
    "parallel": {"_config", "_validate", "formats", "ops"},
    "nn": {"_validate", "formats", "ops"},
    "training": {"_validate", "formats", "ops", "nn"},
    "distillation": {"_validate", "formats", "ops", "nn", "training"},
    "compression": {"_validate", "formats", "ops", "nn", "training", "pruning", "quantization"},
    "optimization": {"_validate", "formats", "ops", "nn", "training", "compression", "pruning", "quantization"},
    "io": {"_validate", "formats", "nn"},
    "tuning": {"_config", "formats", "ops", "nn", "training", "plan", "optimization"},
    # the shipped benchmarks time the public API (``import numaccel``) and read the host's ceilings
    "benchmarks": {"_config", "_kernels", "plan"},
    "cli": None,  # the command may import anything
    "__init__": None,
    "__main__": None,
}
BOTTOM = {"_config", "_validate"}  # shared checks and tunables: anything above may use them
for _group_name, _allowed in ALLOWED.items():
    if _allowed is not None and _group_name not in BOTTOM:
        _allowed |= BOTTOM

# lazy imports (inside functions) that go upwards or sideways: (importer group, imported group)
LAZY = {
    ("plan", "_cuda"),  # a device copy is made only when asked for: numba.cuda stays unimported
    ("ops", "parallel"),  # a dask-array x: Dask stays unimported until one is passed
    ("ops", "_cuda"),
}


def _group(rel: Path) -> str:
    parts = rel.with_suffix("").parts
    return parts[0]


def _imports(path: Path):
    """(imported numaccel group, lazy) for every import in the module at ``path``."""
    rel = path.relative_to(PKG)
    pkg_parts = list(rel.parent.parts)
    tree = ast.parse(path.read_text())
    top_level = {id(n) for n in tree.body}
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg_parts[: len(pkg_parts) - (node.level - 1)] if node.level > 1 else pkg_parts
                mod = base + (node.module.split(".") if node.module else [])
                if not mod:  # "from . import x" at the package root
                    names = [[a.name] for a in node.names]
                else:
                    names = [mod] if node.module else [mod + [a.name] for a in node.names]
            elif node.module and node.module.split(".")[0] == "numaccel":
                mod = node.module.split(".")[1:]
                names = [mod] if mod else [[a.name] for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name.split(".")[1:] for a in node.names if a.name.split(".")[0] == "numaccel"]
        for n in names:
            if n:
                yield n[0], id(node) not in top_level


MODULES = sorted(p for p in PKG.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=[str(p.relative_to(PKG)) for p in MODULES])
def test_imports_run_one_way(path):
    group = _group(path.relative_to(PKG))
    allowed = ALLOWED[group]
    if allowed is None:
        return
    for imported, lazy in _imports(path):
        if imported == group:
            continue
        if imported in allowed:
            continue
        assert lazy and (group, imported) in LAZY, (
            f"{path.relative_to(PKG)} imports numaccel.{imported}{' lazily' if lazy else ''}: "
            f"{group} may import {sorted(allowed)}"
        )


def test_nothing_imports_the_command():
    for path in MODULES:
        group = _group(path.relative_to(PKG))
        if group in ("cli", "__main__"):
            continue
        assert "cli" not in {imported for imported, _ in _imports(path)}, path


def test_no_duck_typing_on_format_attributes():
    """Above the formats, a weight is reached through the registry: no hasattr on a format's attributes and
    no dispatch on class names."""
    attrs = ("indptr", "indices", "data", "qweight", "scales", "zero_points", "group_size", "_linear",
             "_kidx", "to_dense", "dequantize", "nbytes", "on_device", "_device", "shape")
    for path in MODULES:
        text = path.read_text()
        for a in attrs:
            assert f'hasattr(weight, "{a}")' not in text and f"hasattr(w, \"{a}\")" not in text, (path, a)
        tree = ast.parse(text)
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) in ("hasattr", "getattr"):
                if len(node.args) >= 2 and isinstance(node.args[1], ast.Constant) and node.args[1].value in attrs:
                    pytest.fail(f"{path.relative_to(PKG)}:{node.lineno}: {ast.unparse(node)}")
            if isinstance(node, ast.Compare) and "__name__" in ast.unparse(node.left) and any(
                    isinstance(c, ast.Constant) and str(c.value).endswith("Weight") for c in node.comparators):
                pytest.fail(f"{path.relative_to(PKG)}:{node.lineno}: class-name dispatch {ast.unparse(node)}")
            if isinstance(node, ast.Dict) and any(
                    isinstance(k, ast.Constant) and str(k.value) in ("CSRWeight", "Int8Weight") for k in node.keys):
                pytest.fail(f"{path.relative_to(PKG)}:{node.lineno}: class-name table")


def test_no_hook_list():
    for path in MODULES:
        assert "register_hook" not in path.read_text() and "_HOOKS" not in path.read_text(), path
