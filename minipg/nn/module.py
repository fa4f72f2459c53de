"""Module: a container of parameters that live in ONE flat buffer.

Every parameter of a module (its own and its children's) is a view into one
contiguous 1-D array, and every parameter's ``.grad`` is a view into a
second one.  So an optimizer step is one fused update over a vector, a
target-network update is one polyak kernel, natural-gradient code works on
flat vectors, and a checkpoint is one array plus the layout.

The buffer is (re)built automatically when a module finishes ``__init__``:
a parent built after its children takes their parameters into its own
buffer (the Parameter objects stay the same; only their ``.data`` and
``.grad`` are re-pointed).  ``flatten_parameters`` does the same for any
list of parameters, e.g. the actor's and the critic's under one optimizer.
"""

from __future__ import annotations

import copy as _copy
from collections import OrderedDict

import numpy as np

from ..autodiff.tensor import Parameter

__all__ = ["Module", "flatten_parameters", "contiguous_buffers"]


def flatten_parameters(params, dtype=None):
    """Move `params` into one new flat data buffer and one flat grad buffer.

    Existing gradients are carried over.  Returns (data, grad).
    """
    params = list(params)
    if not params:
        raise ValueError("flatten_parameters: no parameters given")
    dtypes = {p.data.dtype for p in params}
    if dtype is None:
        if len(dtypes) > 1:
            raise TypeError(f"parameters have mixed dtypes {sorted(map(str, dtypes))}; "
                            "convert them to one dtype first (Module.to(dtype))")
        dtype = dtypes.pop()
    total = sum(p.data.size for p in params)
    data = np.empty(total, dtype=dtype)
    grad = np.zeros(total, dtype=dtype)
    offset = 0
    for p in params:
        n = p.data.size
        data[offset:offset + n] = p.data.ravel()
        if p.grad is not None:
            grad[offset:offset + n] = np.ravel(p.grad)
        p.data = data[offset:offset + n].reshape(p.data.shape)
        p.grad = grad[offset:offset + n].reshape(p.data.shape)
        p.mark_modified()
        offset += n
    return data, grad


def _address(a):
    return a.__array_interface__["data"][0]


def contiguous_buffers(params):
    """(data, grad) flat views covering `params` in order, or None.

    Non-None only when the parameters sit back to back in one data buffer
    and one grad buffer (as after flatten_parameters).
    """
    params = list(params)
    if not params:
        return None
    views = []
    for attr in ("data", "grad"):
        arrays = [getattr(p, attr) for p in params]
        if any(a is None for a in arrays):
            return None
        base = arrays[0].base
        if base is None or base.ndim != 1 or any(a.base is not base for a in arrays):
            return None
        item = base.itemsize
        start = (_address(arrays[0]) - _address(base)) // item
        pos = start
        for a in arrays:
            if (_address(a) - _address(base)) // item != pos or not a.flags.c_contiguous:
                return None
            pos += a.size
        views.append(base[start:pos])
    return tuple(views)


class _ModuleMeta(type):
    """Rebuild the flat buffer once a module's __init__ has finished."""

    def __call__(cls, *args, **kwargs):
        module = super().__call__(*args, **kwargs)
        if module._parameters or module._modules:
            module.flatten()
        return module


class Module(metaclass=_ModuleMeta):
    """Base class: assign Parameters and Modules as attributes to register them.

    Subclasses define ``forward``; calling the module calls it.
    """

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())

    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            raise RuntimeError(f"{type(self).__name__}.__init__ must call super().__init__() "
                               "before assigning attributes")
        self._parameters.pop(name, None)          # a name holds one thing at a time
        self._modules.pop(name, None)
        if isinstance(value, Parameter):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        object.__setattr__(self, name, value)

    def add_module(self, name, module):
        setattr(self, name, module)
        return module

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def forward(self, *args, **kwargs):  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__} does not define forward()")

    # ------------------------------------------------------------ parameters
    def named_parameters(self, prefix=""):
        """(name, Parameter) pairs, depth first, each parameter once."""
        seen = set()
        out = []

        def walk(module, pre):
            for name, p in module._parameters.items():
                if id(p) not in seen:
                    seen.add(id(p))
                    out.append((pre + name, p))
            for name, m in module._modules.items():
                walk(m, pre + name + ".")
        walk(self, prefix)
        return out

    def parameters(self):
        return [p for _, p in self.named_parameters()]

    def modules(self):
        yield self
        for m in self._modules.values():
            yield from m.modules()

    @property
    def num_parameters(self):
        return sum(p.data.size for p in self.parameters())

    @property
    def dtype(self):
        params = self.parameters()
        return params[0].data.dtype if params else None

    def flatten(self):
        """Put every parameter of this module into one fresh flat buffer."""
        flatten_parameters(self.parameters())
        return self

    def _flat_views(self):
        """contiguous_buffers of the parameters, remembered while every parameter keeps
        the same data and grad arrays (the run loop asks once per environment step, and
        finding the buffers again cost ~1 ms a step for SAC's four modules)."""
        params = self.parameters()
        arrays = [a for p in params for a in (p.data, p.grad)]
        cached = self.__dict__.get("_flat_cache")
        if (cached is not None and len(cached[0]) == len(arrays)
                and all(a is b for a, b in zip(arrays, cached[0]))):
            data, grad = cached[1]
            # still views of the parameters' own buffers (a deep copy of the module copies
            # the remembered views too, into arrays of their own: then look again)
            if (data.base is not None and data.base is arrays[0].base
                    and grad.base is not None and grad.base is arrays[1].base):
                return cached[1]
        views = contiguous_buffers(params)
        if views is not None:
            object.__setattr__(self, "_flat_cache", (arrays, views))
        return views

    @property
    def flat_params(self):
        """All parameters as one vector.

        A writeable view of the flat buffer when the parameters are back to
        back in one (the usual case); otherwise (e.g. a trunk shared by two
        modules) a read-only copy, so that writing into it fails loudly:
        assign to ``flat_params`` instead.
        """
        bufs = self._flat_views()
        if bufs is not None:
            return bufs[0]
        copy = np.concatenate([p.data.ravel() for p in self.parameters()])
        copy.flags.writeable = False
        return copy

    @flat_params.setter
    def flat_params(self, vector):
        self._write_flat(vector, "data")

    @property
    def flat_grad(self):
        """All gradients as one vector: a view, or a read-only copy (see flat_params)."""
        bufs = self._flat_views()
        if bufs is not None:
            return bufs[1]
        copy = np.concatenate([np.zeros(p.data.size, p.data.dtype) if p.grad is None
                               else np.ravel(p.grad) for p in self.parameters()])
        copy.flags.writeable = False
        return copy

    @flat_grad.setter
    def flat_grad(self, vector):
        self._write_flat(vector, "grad")

    def _write_flat(self, vector, attr):
        vector = np.asarray(vector)
        params = self.parameters()
        total = sum(p.data.size for p in params)
        if vector.shape != (total,):
            raise ValueError(f"flat_{'params' if attr == 'data' else attr}: expected a vector "
                             f"of shape ({total},), got {vector.shape}")
        offset = 0
        for p in params:
            n = p.data.size
            piece = vector[offset:offset + n].reshape(p.data.shape)
            if attr == "grad" and p.grad is None:
                p.grad = np.array(piece, dtype=p.data.dtype)
            else:
                getattr(p, attr)[...] = piece
            if attr == "data":
                p.mark_modified()
            offset += n

    def zero_grad(self):
        """Set every parameter's gradient to zero, in place.

        The arrays are not replaced: the flat gradient buffer is filled with
        zeros (or, when the parameters do not sit in one buffer, each
        ``p.grad`` is zeroed where it is; a ``None`` gradient stays ``None``).
        So an array you kept from ``p.grad`` or ``flat_grad`` is a view of
        that buffer: after ``zero_grad()`` it reads zeros, and after the next
        ``backward()`` it reads the new gradient, which is accumulated into the
        same memory.  To keep a gradient, copy it (``p.grad.copy()``,
        ``module.flat_grad.copy()``).  Optimizers hold views of the same
        buffer, so they see the zeros too.
        """
        bufs = self._flat_views()
        if bufs is not None:
            bufs[1].fill(0)
            return
        for p in self.parameters():
            if p.grad is not None:
                p.grad[...] = 0

    # ------------------------------------------------------------- state
    def state_dict(self):
        """An ordered {name: array copy} of the parameters."""
        return OrderedDict((name, p.data.copy()) for name, p in self.named_parameters())

    def load_state_dict(self, state):
        """Copy arrays into the parameters in place (names and shapes must match)."""
        named = OrderedDict(self.named_parameters())
        missing = [k for k in named if k not in state]
        unexpected = [k for k in state if k not in named]
        if missing or unexpected:
            raise KeyError(f"load_state_dict: missing keys {missing}, unexpected keys "
                           f"{unexpected}; this module has {list(named)}")
        for name, p in named.items():
            value = np.asarray(state[name])
            if value.shape != p.data.shape:
                raise ValueError(f"load_state_dict: '{name}' has shape {value.shape}, "
                                 f"the parameter has shape {p.data.shape}")
            p.data[...] = value
            p.mark_modified()
        return self

    def copy(self):
        """An independent deep copy with its own flat buffer (target networks)."""
        clone = _copy.deepcopy(self)
        clone.flatten()
        clone.zero_grad()
        return clone

    def to(self, dtype):
        """Convert every parameter to `dtype` (one new flat buffer)."""
        params = self.parameters()
        for p in params:
            p.data = p.data.astype(dtype)
            p.grad = None
        flatten_parameters(params, dtype=dtype)
        return self

    def __repr__(self):
        inner = ", ".join(f"{k}={v!r}" for k, v in self._modules.items())
        return f"{type(self).__name__}({inner})"

