"""minipg.registry: the one shape of the algorithm, audit and reference registries."""

import sys
import types

import pytest

from minipg.registry import Registry, RegistryError, UnknownNameError


@pytest.fixture
def fake_package(monkeypatch):
    """A package ``fakepkg`` with modules ``a`` and ``b`` that register into REG."""
    reg = Registry("widget", "fakepkg", ("a", "b"))
    pkg = types.ModuleType("fakepkg")
    pkg.__path__ = []
    monkeypatch.setitem(sys.modules, "fakepkg", pkg)
    for mod_name, names in (("a", ("x", "y")), ("b", ("z",))):
        mod = types.ModuleType(f"fakepkg.{mod_name}")
        for n in names:
            reg.register(n, note=n.upper())(types.SimpleNamespace(n=n, __module__=mod.__name__))
        monkeypatch.setitem(sys.modules, f"fakepkg.{mod_name}", mod)
    return reg


def test_names_in_registration_order_and_get(fake_package):
    assert fake_package.names() == ["x", "y", "z"]
    assert fake_package.get("z").n == "z"
    assert fake_package.entry("y").info == {"note": "Y"}
    assert "x" in fake_package and "w" not in fake_package and len(fake_package) == 3


def test_unknown_name_lists_accepted(fake_package):
    with pytest.raises(UnknownNameError, match="unknown widget 'w'; accepted: x, y, z"):
        fake_package.get("w")


def test_name_registered_twice_is_an_error():
    reg = Registry("widget", "fakepkg", ())
    reg.register("x")(object())
    with pytest.raises(RegistryError, match="registered twice"):
        reg.register("x")(object())


def test_missing_listed_module_is_an_error_not_a_silent_drop():
    reg = Registry("audit check", "minipg", ("no_such_module_here",))
    with pytest.raises(RegistryError, match="no_such_module_here.*does not exist"):
        reg.names()


def test_missing_dependency_inside_a_module_propagates(monkeypatch):
    # a module that exists but imports something missing raises the real ImportError
    reg = Registry("widget", "fakepkg2", ("m",))
    pkg = types.ModuleType("fakepkg2")
    pkg.__path__ = []
    monkeypatch.setitem(sys.modules, "fakepkg2", pkg)
    monkeypatch.setattr(sys, "meta_path", sys.meta_path)

    class Finder:
        @staticmethod
        def find_spec(name, path=None, target=None):
            if name == "fakepkg2.m":
                import importlib.machinery
                import importlib.abc

                class Loader(importlib.abc.Loader):
                    def create_module(self, spec):
                        return None

                    def exec_module(self, module):
                        import not_a_real_dependency_xyz  # noqa: F401
                return importlib.machinery.ModuleSpec(name, Loader())
            return None
    monkeypatch.setattr(sys, "meta_path", [Finder()] + sys.meta_path)
    with pytest.raises(ModuleNotFoundError, match="not_a_real_dependency_xyz"):
        reg.load()


def test_a_module_listed_twice_is_an_error():
    with pytest.raises(RegistryError, match="twice"):
        Registry("widget", "fakepkg", ("a", "a"))


def test_listed_module_order_wins_over_import_order(monkeypatch):
    # a module imported directly (before the registry loads the others) registers first;
    # the registry still lists entries in its modules' order
    reg = Registry("widget", "fakepkg3", ("a", "b"))
    pkg = types.ModuleType("fakepkg3")
    pkg.__path__ = []
    monkeypatch.setitem(sys.modules, "fakepkg3", pkg)
    for mod_name, names in (("b", ("z",)), ("a", ("x", "y"))):   # b registers first
        mod = types.ModuleType(f"fakepkg3.{mod_name}")
        for n in names:
            reg.register(n)(types.SimpleNamespace(n=n, __module__=mod.__name__))
        monkeypatch.setitem(sys.modules, f"fakepkg3.{mod_name}", mod)
    assert reg.names() == ["x", "y", "z"]
