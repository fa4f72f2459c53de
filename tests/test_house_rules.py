"""House rules that keep minipg's modules apart (CONTRIBUTING.md, "Conventions").

1. No private name crosses a module boundary anywhere in minipg.  A name is
   private when it starts with one underscore and is not a dunder
   (``_helper``, ``_HALF_LOG_2PI``, a module ``_checks``; not
   ``__version__``).  A module may use its own private names; no other module
   imports them.  The forms checked, at any depth (function-level imports
   count): ``from X import _name`` (absolute or relative; ``_name`` a
   function, a constant or a submodule), and ``from X._private import name``
   or ``import X._private`` (a private module is private to its own file).
2. The estimator families import only the engine, ``estimators.checks`` and
   ``estimators.terms``, never one another.
3. Code outside the autodiff engine that writes into a tensor's data says so
   with the public ``Tensor.mark_modified()``, never by touching the engine's
   version counter; and ``Module.zero_grad`` zeroes gradients in place, as
   its docstring says.
"""

import ast
import textwrap
from pathlib import Path

import numpy as np
import pytest

import minipg
from minipg.autodiff import InplaceModificationError, Parameter, Tensor, ops
from minipg.nn import MLP
from minipg.optim import SGD

MINIPG_ROOT = Path(minipg.__file__).resolve().parent


def _is_private(name):
    return name.startswith("_") and not name.startswith("__")


def _module_names(root, package):
    """{dotted module name: path} for every .py file under ``root`` (the package dir)."""
    mods = {}
    for path in sorted(root.rglob("*.py")):
        parts = (package,) + path.relative_to(root).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = path
    return mods


def _resolve(current, is_package, node):
    """The absolute module named by an ``ast.ImportFrom`` inside module ``current``."""
    if not node.level:
        return node.module or ""
    base = current.split(".")
    if not is_package:
        base = base[:-1]
    if node.level > 1:
        base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def private_crossings(root, package):
    """Every import in the package at ``root`` that takes a private name from another module.

    Returns ``"path:line: ..."`` strings, one per offending name, in file order.
    """
    mods = _module_names(root, package)
    found = []

    def private_part(dotted):
        """The first private component of a module path inside the package, or None."""
        for part in dotted.split(".")[1:]:
            if _is_private(part):
                return part
        return None

    for current, file in mods.items():
        tree = ast.parse(file.read_text(), filename=str(file))
        is_package = file.name == "__init__.py"
        path = file.relative_to(root.parent)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                target = _resolve(current, is_package, node)
                if target != package and not target.startswith(package + "."):
                    continue
                bad_module = private_part(target)
                for alias in node.names:
                    if bad_module is not None and target != current:
                        found.append(f"{path}:{node.lineno}: imports {alias.name} from private "
                                     f"module {target}")
                    elif _is_private(alias.name):
                        dest = f"{target}.{alias.name}"
                        dest = dest if dest in mods else target
                        if dest != current:
                            found.append(f"{path}:{node.lineno}: imports {alias.name} "
                                         f"from {target}")
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    target = alias.name
                    inside = target.startswith(package + ".")
                    if inside and private_part(target) and target != current:
                        found.append(f"{path}:{node.lineno}: imports private module {target}")
    return found


def test_no_private_name_crosses_a_module_boundary_in_minipg():
    found = private_crossings(MINIPG_ROOT, "minipg")
    assert not found, "private names imported across modules:\n" + "\n".join(found)


ENGINE = ("minipg.autodiff", "minipg.nn", "minipg.distributions", "minipg.kernels")
SHARED = {"checks": (), "terms": ("minipg.estimators.checks",)}


def _is_module(dotted):
    path = MINIPG_ROOT.parent.joinpath(*dotted.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def _minipg_imports(module, path):
    """The minipg modules (or packages) that the module at ``path`` imports."""
    is_package = path.name == "__init__.py"
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            target = _resolve(module, is_package, node)
            if target.startswith("minipg"):
                for alias in node.names:      # a submodule, or a name defined in target
                    sub = f"{target}.{alias.name}"
                    out.add(sub if _is_module(sub) else target)
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("minipg")}
    return out


def test_estimator_families_import_only_the_engine_checks_and_terms():
    """Each family module imports the engine, estimators.checks and estimators.terms only
    (terms: the engine and checks; checks: the engine), so no family builds on another."""
    found = []
    for path in sorted((MINIPG_ROOT / "estimators").glob("*.py")):
        if path.name == "__init__.py":
            continue
        module = f"minipg.estimators.{path.stem}"
        allowed = SHARED.get(path.stem, ("minipg.estimators.checks", "minipg.estimators.terms"))
        for imported in sorted(_minipg_imports(module, path)):
            if not (imported in allowed or any(imported == e or imported.startswith(e + ".")
                                               for e in ENGINE)):
                found.append(f"{module} imports {imported}")
    assert not found, "\n".join(found)


def _write_package(tmp_path, files):
    root = tmp_path / "pkg"
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


def test_checker_names_each_kind_of_bad_import(tmp_path):
    root = _write_package(tmp_path, {
        "__init__.py": "",
        "a.py": "_helper = 1\nPUBLIC = 2\n__version__ = '0'\n",
        "_hidden.py": "value = 1\n",
        "sub/__init__.py": "",
        "sub/b.py": """\
            from pkg.a import PUBLIC, __version__
            from ..a import _helper
            from pkg import _hidden

            def f():
                from pkg._hidden import value
                import pkg._hidden
                return value
            """,
    })
    found = private_crossings(root, "pkg")
    b = Path("pkg", "sub", "b.py")
    assert found == [
        f"{b}:2: imports _helper from pkg.a",
        f"{b}:3: imports _hidden from pkg",
        f"{b}:6: imports value from private module pkg._hidden",
        f"{b}:7: imports private module pkg._hidden",
    ]


def test_checker_accepts_public_and_own_names(tmp_path):
    root = _write_package(tmp_path, {
        "__init__.py": "from .a import PUBLIC\n",
        "a.py": "import os\nfrom os import path as _path\n_helper = 1\nPUBLIC = _helper\n",
        "b.py": """\
            from . import a
            from .a import PUBLIC
            from pkg import __version__
            import pkg.a
            """,
    })
    assert private_crossings(root, "pkg") == []


# ------------------------------------------------ Tensor.mark_modified


def test_no_module_outside_autodiff_writes_the_version_counter():
    found = []
    for path in sorted(MINIPG_ROOT.rglob("*.py")):
        if path.parent.name == "autodiff":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr == "_version":
                found.append(f"{path}:{node.lineno}")
    assert not found, "use Tensor.mark_modified():\n" + "\n".join(found)


def _saved_constant_graph():
    x = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    c = Tensor(np.array([3.0, 4.0]))            # a constant that Mul saves for backward
    return x, c, (x * c).sum()


def test_unmodified_tensor_on_the_tape_backwards():
    x, c, y = _saved_constant_graph()
    y.backward()
    np.testing.assert_array_equal(x.grad, [3.0, 4.0])


def test_marked_modification_of_a_saved_tensor_makes_backward_raise():
    x, c, y = _saved_constant_graph()
    c.data[0] = 30.0                            # a write the tape cannot see ...
    assert c.mark_modified() is c               # ... until it is marked
    with pytest.raises(InplaceModificationError, match="'Mul'"):
        y.backward()
    assert x.grad is None


def test_an_unmarked_raw_write_is_invisible_to_the_tape():
    # why mark_modified exists: without it backward uses the new value
    x, c, y = _saved_constant_graph()
    c.data[0] = 30.0
    y.backward()
    np.testing.assert_array_equal(x.grad, [30.0, 4.0])


def test_mark_modified_changes_no_value_and_marks_a_parameter():
    p = Parameter(np.array([0.5, -1.0]))
    y = ops.square(p).sum()
    p.data += 1.0                               # e.g. a hand-written update
    p.mark_modified()
    np.testing.assert_array_equal(p.data, [1.5, 0.0])
    with pytest.raises(InplaceModificationError, match="'Square'"):
        y.backward()


def test_mark_modified_through_a_view_marks_the_tensor_it_views():
    x, c, y = _saved_constant_graph()
    view = c.reshape(2, 1)
    view.data[0, 0] = 30.0
    view.mark_modified()
    with pytest.raises(InplaceModificationError, match="'Mul'"):
        y.backward()


def test_an_optimizer_step_marks_the_parameters():
    net = MLP([2, 3, 1], rng=0)
    opt = SGD(net, lr=0.1)
    loss = ops.square(net(np.ones((4, 2)))).sum()
    opt.step()                                  # writes the flat buffer, marks each parameter
    with pytest.raises(InplaceModificationError):
        loss.backward()


def test_loading_parameters_marks_them():
    net = MLP([2, 3, 1], rng=0)
    loss = ops.square(net(np.ones((4, 2)))).sum()
    net.load_state_dict(MLP([2, 3, 1], rng=1).state_dict())
    with pytest.raises(InplaceModificationError):
        loss.backward()


# ------------------------------------------------ Module.zero_grad, in place


def _backward(net, x):
    ops.square(net(x)).sum().backward()


def test_zero_grad_zeroes_the_gradient_arrays_a_user_kept():
    net = MLP([3, 4, 2], rng=0)
    x = np.random.default_rng(0).standard_normal((5, 3))
    _backward(net, x)
    kept = [p.grad for p in net.parameters()]
    kept_flat = net.flat_grad
    copies = [g.copy() for g in kept]
    assert all(np.any(g) for g in copies)
    net.zero_grad()
    for p, g, c in zip(net.parameters(), kept, copies):
        assert p.grad is g                      # the same array, not a new one
        assert not np.any(g)                    # what the user kept reads zeros
        assert np.any(c)                        # a copy keeps the gradient
    assert not np.any(kept_flat)


def test_after_zero_grad_a_kept_gradient_reads_the_next_backward():
    net = MLP([3, 4, 2], rng=0)
    x = np.random.default_rng(0).standard_normal((5, 3))
    _backward(net, x)
    kept = net.parameters()[0].grad
    first = kept.copy()
    net.zero_grad()
    _backward(net, 2.0 * x)
    np.testing.assert_array_equal(kept, net.parameters()[0].grad)
    assert not np.array_equal(kept, first)
    net.zero_grad()
    _backward(net, x)                           # same input: same gradient, in the same memory
    np.testing.assert_array_equal(kept, first)


def test_zero_grad_outside_one_buffer_zeroes_each_grad_in_place_and_keeps_none():
    net = MLP([3, 4, 2], rng=0)
    params = net.parameters()
    own = np.ones_like(params[0].data)          # a gradient outside the flat buffer
    params[0].grad = own
    params[1].grad = None
    net.zero_grad()
    assert params[0].grad is own and not np.any(own)
    assert params[1].grad is None
