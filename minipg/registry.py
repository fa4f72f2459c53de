"""The one shape of minipg's registries: algorithms, audit checks, reference cases.

A :class:`Registry` names, up front and in order, the modules that hold its
entries; each of those modules registers its entries with the registry's
:meth:`Registry.register` decorator.  The modules are imported on first use
(so ``import minipg`` stays light), a listed module that cannot be imported is
an error (never a silently missing family), a name registered twice is an
error, and an unknown name is an error that lists the accepted ones.

Adding an algorithm therefore means: write its module, list the module once in
each registry that should see it (``minipg.algorithms``, ``minipg.audit``,
``minipg.reference``), and decorate what it defines.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field

__all__ = ["Registry", "Entry", "RegistryError", "UnknownNameError"]


class RegistryError(RuntimeError):
    """A registry that cannot be built: a listed module is missing, or a name is taken twice."""


class UnknownNameError(ValueError):
    """A name that the registry does not hold (the message lists the accepted names)."""


@dataclass(frozen=True)
class Entry:
    """One registered object, with the module that registered it and free-form metadata."""
    name: object
    obj: object
    module: str
    info: dict = field(default_factory=dict)


class Registry:
    """Entries registered by decorator from the modules listed in ``modules``.

    ``kind`` names what is registered (used in error messages: "algorithm",
    "audit check", "reference case"); ``package`` is the dotted package whose
    submodules ``modules`` are (a module name may itself be dotted)."""

    def __init__(self, kind, package, modules):
        self.kind = kind
        self.package = package
        self.modules = tuple(modules)
        if len(set(self.modules)) != len(self.modules):
            raise RegistryError(f"{kind} registry of {package} lists a module twice: {self.modules}")
        self._entries = {}
        self._loaded = False
        self._loading = False

    def register(self, name, **info):
        """Decorator: register the decorated object under ``name`` (any hashable) with ``info``."""
        def decorate(obj):
            if name in self._entries:
                first = self._entries[name].module
                raise RegistryError(f"{self.kind} {name!r} registered twice "
                                    f"(by {first} and by {getattr(obj, '__module__', '?')})")
            self._entries[name] = Entry(name, obj, getattr(obj, "__module__", "?"), dict(info))
            return obj
        return decorate

    def load(self):
        """Import every listed module (once); a module that is not there is a RegistryError."""
        if self._loaded or self._loading:
            return self
        self._loading = True
        try:
            for module in self.modules:
                dotted = f"{self.package}.{module}"
                try:
                    importlib.import_module(dotted)
                except ModuleNotFoundError as exc:
                    if exc.name is not None and dotted.startswith(exc.name):
                        raise RegistryError(
                            f"{self.kind} registry of {self.package} lists module {module!r}, "
                            f"which does not exist ({dotted})") from exc
                    raise
            self._loaded = True
        finally:
            self._loading = False
        return self

    def entries(self):
        """The registered :class:`Entry` objects: modules in their listed order, entries of
        one module in registration order (whichever module was imported first)."""
        self.load()
        listed = {f"{self.package}.{m}": i for i, m in enumerate(self.modules)}
        return sorted(self._entries.values(), key=lambda e: listed.get(e.module, len(listed)))

    def names(self):
        """The registered names, in the order of :meth:`entries`."""
        return [e.name for e in self.entries()]

    def entry(self, name):
        """The :class:`Entry` registered under ``name``; UnknownNameError lists the accepted ones."""
        self.load()
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            accepted = ", ".join(str(n) for n in self._entries)
            raise UnknownNameError(f"unknown {self.kind} {name!r}; accepted: {accepted}") from None

    def get(self, name):
        """The object registered under ``name``."""
        return self.entry(name).obj

    def __contains__(self, name):
        self.load()
        return name in self._entries

    def __len__(self):
        self.load()
        return len(self._entries)
