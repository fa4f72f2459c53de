"""The Tensor and the tape.

A :class:`Tensor` wraps an ``np.ndarray`` (float64 unless asked otherwise).
When gradient recording is on and an op is applied to a tensor that requires
a gradient, the result remembers the op, its inputs and what the op saved for
its backward pass: that chain of records *is* the tape.  ``backward()`` walks
it in reverse topological order (iteratively: RL graphs can be long) and
accumulates gradients with ``+``, so a tensor used twice receives both
contributions.

In-place changes never make a gradient silently wrong:

* a tensor computed by an op (a non-leaf) is on the tape; the Tensor methods
  that write into data (``t[i] = v``, ``copy_``, ``fill_``, ``add_``,
  ``mul_``) refuse at once, naming the op that computed it.  So do writes
  into a leaf that requires grad, or through a view of either (reshape,
  transpose, basic indexing, ``detach()``, ``Tensor(t)``), while recording;
* other writes (constants, leaves under ``no_grad()``, optimizer steps)
  increase a version counter, shared by a tensor and its views.  An op
  records the versions of its inputs when it runs, and ``backward()``
  refuses, naming the op, to use a graph whose inputs changed since.

Writing into ``t.data`` with raw NumPy bypasses all this: after such a write
call ``t.mark_modified()`` (as the optimizers, ``Module.load_state_dict`` and
the target-network updates do), so that a graph that saved the old values
refuses to run backward.

Only leaves (tensors created by the user, e.g. parameters) receive ``.grad``.
After ``backward()`` the graph is freed (saved arrays dropped) unless
``retain_graph=True``; a second backward through a freed graph is an error.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools

import numpy as np

__all__ = [
    "Tensor", "Parameter", "no_grad", "enable_grad", "is_grad_enabled",
    "InplaceModificationError", "GraphFreedError", "as_tensor", "DEFAULT_DTYPE",
]

DEFAULT_DTYPE = np.float64

_grad_enabled = True


class InplaceModificationError(RuntimeError):
    """A tensor that an op saved for backward was modified in place."""


class GraphFreedError(RuntimeError):
    """backward() through a graph that an earlier backward() already freed."""


def is_grad_enabled() -> bool:
    return _grad_enabled


class _GradMode(contextlib.ContextDecorator):
    def __init__(self, enabled):
        self.enabled = enabled

    def __enter__(self):
        global _grad_enabled
        self._prev = _grad_enabled
        _grad_enabled = self.enabled

    def __exit__(self, *exc):
        global _grad_enabled
        _grad_enabled = self._prev
        return False


def no_grad():
    """Context manager / decorator: ops inside record nothing on the tape."""
    return _GradMode(False)


def enable_grad():
    """Context manager / decorator: turn recording back on inside no_grad()."""
    return _GradMode(True)


def _to_array(data, dtype=None):
    if isinstance(data, Tensor):
        data = data.data
    if dtype is None:
        arr = np.asarray(data)
        if arr.dtype.kind in "biu" or arr.dtype == np.bool_ or arr.dtype.kind == "O":
            arr = arr.astype(DEFAULT_DTYPE)
        return arr
    return np.asarray(data, dtype=dtype)


class Tensor:
    """An ndarray with a place on the tape.

    Parameters
    ----------
    data : array_like
        Copied only when a dtype conversion is needed.  Integer and bool
        input become float64 (the default dtype); pass ``dtype=np.float32``
        for single precision.
    requires_grad : bool
        Whether ``backward()`` should compute a gradient for this tensor.

    Writing in place: the methods ``t[i] = v``, ``copy_``, ``fill_``, ``add_``
    and ``mul_`` check that the write is safe and record it.  Code that
    writes into ``t.data`` directly (an optimizer step, a checkpoint load, a
    target-network update) calls ``t.mark_modified()`` afterwards: the data
    was changed in place outside the tape, so anything on the tape that saved
    it will refuse to backward (``InplaceModificationError``) instead of
    using a graph recorded for the old values.
    """

    __slots__ = ("data", "grad", "requires_grad", "_node", "_version", "_base", "name",
                 "__weakref__")

    # Make NumPy defer to Tensor's reflected operators (ndarray * Tensor).
    __array_ufunc__ = None

    def __init__(self, data, requires_grad=False, dtype=None, name=None):
        self.data = _to_array(data, dtype)
        self.grad = None
        self.requires_grad = bool(requires_grad)
        if self.requires_grad:
            _check_differentiable_dtype(self.data)
        # how this tensor was made: [op, parents, saved, needs, version_sum, seq],
        # None for a leaf or a constant (see record()).  A plain list, not an
        # object: it is built for every op on the hot path.
        self._node = None
        self._version = 0
        # the tensor whose data this one is a view of (reshape, transpose, basic
        # indexing, detach, Tensor(t)): writes through a view count as writes to
        # the base
        self._base = None
        if isinstance(data, Tensor) and np.may_share_memory(self.data, data.data):
            self._base = data if data._base is None else data._base
        self.name = name

    @property
    def _op(self):
        return None if self._node is None else self._node[0]

    @property
    def _parents(self):
        return () if self._node is None else self._node[1]

    @property
    def _saved(self):
        return None if self._node is None else self._node[2]

    # ------------------------------------------------------------------ basics
    @property
    def shape(self):
        return self.data.shape

    @property
    def ndim(self):
        return self.data.ndim

    @property
    def size(self):
        return self.data.size

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def is_leaf(self):
        return self._node is None

    def __len__(self):
        return len(self.data)

    def __iter__(self):
        if self.data.ndim == 0:
            raise TypeError("iteration over a 0-d Tensor")
        return (self[i] for i in range(len(self.data)))

    def item(self):
        return self.data.item()

    def __float__(self):
        return float(self.data)

    def __bool__(self):
        # as NumPy: only a single element has a truth value
        return bool(self.data)

    def numpy(self):
        """The underlying array (no copy)."""
        return self.data

    def __repr__(self):
        grad = ", requires_grad=True" if self.requires_grad else ""
        op = f", op={self._op.__name__}" if self._op is not None else ""
        return f"Tensor({np.array2string(self.data, precision=6)}{grad}{op})"

    def detach(self):
        """A tensor sharing this one's data, cut from the tape.

        Writing into the detached tensor counts as writing into this one: a
        graph that saved this tensor then refuses to run backward.
        """
        return Tensor(self)                      # Tensor(t) shares data and version

    def requires_grad_(self, flag=True):
        if not self.is_leaf:
            raise RuntimeError("requires_grad_ applies to leaf tensors only; use detach() first")
        if flag:
            _check_differentiable_dtype(self.data)
        self.requires_grad = bool(flag)
        return self

    def zero_grad(self):
        if self.grad is not None:
            self.grad[...] = 0

    # ------------------------------------------------------------- in place
    def mark_modified(self):
        """Record that ``data`` was changed in place outside the tape; returns self.

        Call it after writing into ``self.data`` (or into an array that shares
        its memory) by other means than the Tensor methods, which call it
        themselves.  It increases the version counter of this tensor, and of
        the tensor it is a view of, if any: every op on the tape that saved
        this tensor (or a view of the same data) then makes ``backward()``
        raise ``InplaceModificationError``, naming the op.  It changes no
        value and records nothing on the tape; it does not check that the
        write was safe (the Tensor methods do).
        """
        self._version += 1
        if self._base is not None:
            self._base._version += 1
        return self

    def __setitem__(self, index, value):
        self._check_inplace("__setitem__")
        self.data[index] = _to_array(value)
        self.mark_modified()

    def copy_(self, value):
        """Write value into this tensor's data in place."""
        self._check_inplace("copy_")
        np.copyto(self.data, _to_array(value))
        self.mark_modified()
        return self

    def fill_(self, value):
        self._check_inplace("fill_")
        self.data.fill(value)
        self.mark_modified()
        return self

    def add_(self, value):
        self._check_inplace("add_")
        self.data += _to_array(value)
        self.mark_modified()
        return self

    def mul_(self, value):
        self._check_inplace("mul_")
        self.data *= _to_array(value)
        self.mark_modified()
        return self

    def _check_inplace(self, what):
        """In place is refused where it would make a recorded gradient wrong."""
        if self._node is not None:
            raise InplaceModificationError(
                f"{what} on a tensor computed by op '{self._node[0].__name__}', which is on "
                "the tape: the recorded gradient would no longer match its values. Build the "
                "new value out of place (e.g. with ops.where) instead.")
        if _grad_enabled and (self.requires_grad or (
                self._base is not None and self._base.requires_grad)):
            raise InplaceModificationError(
                f"{what} on a tensor that requires grad, or on a view of one (reshape, "
                "transpose, indexing, detach): this would change a value the tape may depend "
                "on. Do it inside `with no_grad():` (a graph that already used the old value "
                "then refuses to run backward).")

    # --------------------------------------------------------------- backward
    def backward(self, grad=None, retain_graph=False):
        """Accumulate d(self)/d(leaf) * grad into every leaf's ``.grad``.

        grad defaults to 1 for a single-element tensor; otherwise it is the
        output cotangent, of this tensor's shape.
        """
        if not self.requires_grad:
            raise RuntimeError(
                "backward() on a tensor that does not require grad: no input of the "
                "computation had requires_grad=True, or it ran under no_grad().")
        if grad is None:
            if self.data.size != 1:
                raise RuntimeError(
                    f"backward() without an argument needs a single-element output; "
                    f"this one has shape {self.shape}. Pass the output cotangent.")
            grad = np.ones_like(self.data)
        else:
            grad = _to_array(grad, self.data.dtype)
            if grad.shape != self.data.shape:
                raise ValueError(f"backward(grad): grad has shape {grad.shape}, "
                                 f"the tensor has shape {self.shape}")
        backprop(self, grad, retain_graph=retain_graph)

    # ----------------------------------------------------------- operators
    # Filled in by minipg.autodiff.ops (they are the differentiable ops).


class Parameter(Tensor):
    """A leaf tensor that requires grad; modules register these."""

    __slots__ = ()

    def __init__(self, data, dtype=None, name=None):
        super().__init__(data, requires_grad=True, dtype=dtype, name=name)


def _check_differentiable_dtype(data):
    if data.dtype.kind != "f":
        raise TypeError(f"only floating-point tensors can require grad; got dtype {data.dtype} "
                        "(convert with dtype=np.float64 or np.float32)")


def as_tensor(x, dtype=None):
    """x itself if it is a Tensor, else a constant Tensor holding x."""
    if isinstance(x, Tensor):
        return x
    return Tensor(x, dtype=dtype)


# ---------------------------------------------------------------------------
# Recording and walking the tape

def _version_of(t):
    """Writes to t, or to the tensor t is a view of, since t was made."""
    base = t._base
    return t._version if base is None else t._version + base._version


_sequence = itertools.count()
_new = object.__new__


def wrap(data):
    """A constant Tensor around an ndarray, skipping Tensor()'s conversions (hot paths)."""
    t = _new(Tensor)
    t.data = data
    t.grad = None
    t.requires_grad = False
    t._node = None
    t._version = 0
    t._base = None
    t.name = None
    return t


def record(op, out, parents, saved):
    """Wrap `out` in a Tensor that remembers how it was made.

    `parents` is a tuple aligned with the op's differentiable arguments:
    a Tensor, or None for a constant.  Nothing is recorded under no_grad()
    or when no parent requires grad.  The node also keeps which parents
    need a gradient, the sum of their versions (versions only grow, so the
    sum changes exactly when one of them was modified in place) and a
    sequence number: inputs are always made before outputs, so decreasing
    sequence numbers are a reverse topological order.
    """
    t = wrap(out)
    if _grad_enabled:
        needs = []
        version_sum = 0
        for p in parents:
            if p is None:
                needs.append(False)
            else:
                needs.append(p.requires_grad)
                version_sum += p._version if p._base is None else _version_of(p)
        if True in needs:
            t.requires_grad = True
            t._node = [op, parents, saved, tuple(needs), version_sum, next(_sequence)]
    return t


_NEED1 = (True,)


def record1(op, out, x, saved):
    """record() for one argument (x a Tensor or None): the hot path of unary ops."""
    t = wrap(out)
    if _grad_enabled and x is not None and x.requires_grad:
        t.requires_grad = True
        t._node = [op, (x,), saved, _NEED1,
                   x._version if x._base is None else _version_of(x), next(_sequence)]
    return t


def record2(op, out, a, b, saved):
    """record() for two arguments (each a Tensor or None): binary ops' hot path."""
    t = wrap(out)
    need_a = a is not None and a.requires_grad
    need_b = b is not None and b.requires_grad
    if _grad_enabled and (need_a or need_b):
        t.requires_grad = True
        t._node = [op, (a, b), saved, (need_a, need_b),
                   (0 if a is None else a._version if a._base is None else _version_of(a))
                   + (0 if b is None else b._version if b._base is None else _version_of(b)),
                   next(_sequence)]
    return t


def topological_order(root):
    """Non-leaf tensors reachable from root, inputs before outputs."""
    nodes = {}
    stack = [root]
    while stack:
        t = stack.pop()
        if t._node is None or id(t) in nodes:
            continue
        nodes[id(t)] = t
        stack.extend(p for p in t._node[1] if p is not None and p.requires_grad)
    return sorted(nodes.values(), key=lambda t: t._node[5])


def _version_error(t):
    op, parents, _, _, vsum, _ = t._node
    if t._version:
        return InplaceModificationError(
            f"the output of op '{op.__name__}' (shape {t.shape}) was modified in place (through "
            "a view or a detached copy) after it was computed; its gradient would be wrong. "
            "Recompute the forward pass after changing it.")
    now = sum(_version_of(p) for p in parents if p is not None)
    shapes = ", ".join(str(p.shape) for p in parents if p is not None)
    return InplaceModificationError(
        f"an input of op '{op.__name__}' (input shapes {shapes}) was modified in place after "
        f"the op used it (input versions summed {vsum} then, {now} now); its gradient would "
        "be wrong. Recompute the forward pass after changing it.")


def check_recorded(t):
    """Raise if t's node was freed by backward() or its inputs changed in place."""
    op, parents, saved, _, vsum, _ = t._node
    if saved is None:
        raise GraphFreedError(
            f"op '{op.__name__}' had its saved values freed by an earlier backward(); pass "
            "retain_graph=True to go through the graph again.")
    if sum(_version_of(p) for p in parents if p is not None) != vsum or t._version:
        raise _version_error(t)


def backprop(root, grad, retain_graph=False, sink=None):
    """Reverse pass: push `grad` from root to the leaves.

    Nodes are visited in decreasing sequence number (a max-heap), so each is
    processed once, after every node that uses it.  Leaf gradients
    accumulate into ``leaf.grad``, or, when `sink` (a dict) is given, into
    ``sink[id(leaf)]`` and no ``.grad`` is touched.
    """
    if root._node is None:                       # a leaf: d root / d root = I
        if sink is None:
            _accumulate_leaf(root, grad)
        else:
            _accumulate_sink(sink, root, grad)
        return
    grads = {id(root): grad}
    heap = [(-root._node[5], root)]
    pop, push = heapq.heappop, heapq.heappush
    while heap:
        node_t = pop(heap)[1]
        g = grads.pop(id(node_t))
        node = node_t._node
        op, parents, saved, needs, vsum, _ = node
        if saved is None:
            raise GraphFreedError(
                f"backward() reached op '{op.__name__}' whose saved values were freed by an "
                "earlier backward(); pass retain_graph=True to go through it twice.")
        version_sum = 0                          # check_recorded(), inlined: hot path
        for p in parents:
            if p is not None:
                version_sum += p._version if p._base is None else _version_of(p)
        if version_sum != vsum or node_t._version:
            raise _version_error(node_t)
        input_grads = op.vjp(g, saved, needs)
        for p, need, pg in zip(parents, needs, input_grads):
            if not need or pg is None:
                continue
            pnode = p._node
            if pnode is None:                    # a leaf
                if pg.shape != p.data.shape:
                    raise ValueError(
                        f"op '{op.__name__}' produced a gradient of shape {pg.shape} for an "
                        f"input of shape {p.data.shape}")
                if sink is not None:
                    _accumulate_sink(sink, p, pg)
                elif p.grad is None:
                    # a fresh array we own: pg may be a view of another gradient
                    p.grad = np.array(pg, dtype=p.data.dtype, copy=True)
                else:
                    p.grad += pg
            else:
                key = id(p)
                prev = grads.get(key)
                if prev is None:
                    grads[key] = pg
                    push(heap, (-pnode[5], p))
                else:                            # out of place: pg may be shared
                    grads[key] = prev + pg
        if not retain_graph:
            node[2] = None                       # free the saved arrays


def _accumulate_sink(sink, leaf, g):
    key = id(leaf)
    prev = sink.get(key)
    sink[key] = np.array(g, dtype=leaf.data.dtype, copy=True) if prev is None else prev + g


def _accumulate_leaf(leaf, g):
    if not leaf.requires_grad:
        return
    if g.shape != leaf.data.shape:
        raise AssertionError(f"internal: gradient shape {g.shape} for leaf {leaf.data.shape}")
    if leaf.grad is None:
        # a fresh array we own: the vjp may have returned a view of another gradient
        leaf.grad = np.array(g, dtype=leaf.data.dtype, copy=True)
    else:
        leaf.grad += g
