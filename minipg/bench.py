"""`minipg bench`: the engine's speed against a plain-NumPy floor and PyTorch.

Three cases, each in float64 and float32:

(a) one full gradient step (forward, backward, Adam) of a 4-64-64-2 tanh MLP
    on a batch of 64 (a small policy network);
(b) the same for a 23-256-256-1 relu MLP on a batch of 256 (a SAC/TD3 critic);
(c) acting latency: forward only of a 3-64-64-1 tanh MLP on one observation.

The loss is the mean squared error to a fixed target.  Each case is timed
against (i) a hand-written NumPy forward/backward/Adam with the parameters in
one flat buffer — the floor for any NumPy engine — and (ii) PyTorch on the
CPU with one thread, when torch is importable (it is not a dependency).
Figures are medians over repeats of the mean time per step; the ratios
minipg/floor and minipg/torch are measured in the same run, so they survive
a noisy machine better than the absolute times.

Then each numba kernel is timed against its NumPy twin.
"""

from __future__ import annotations

import time

import numpy as np

from .threads import blas_threads as current_blas_threads
from .threads import limit

CASES = {
    "a": dict(sizes=(4, 64, 64, 2), activation="tanh", batch=64, train=True),
    "b": dict(sizes=(23, 256, 256, 1), activation="relu", batch=256, train=True),
    "c": dict(sizes=(3, 64, 64, 1), activation="tanh", batch=1, train=False),
}
GOALS = {  # from the engine-room issue: (minipg/torch, minipg/floor) upper bounds
    "a": (0.35, 1.5),
    "b": (0.9, 1.15),
    "c": (0.4, None),
}


def _time(fn, repeats, number):
    """Median over `repeats` of the mean seconds per call over `number` calls."""
    for _ in range(max(3, number // 10)):
        fn()
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        samples.append((time.perf_counter() - t0) / number)
    return float(np.median(samples))


def _data(case, dtype, seed=0):
    rng = np.random.default_rng(seed)
    sizes, batch = case["sizes"], case["batch"]
    x = rng.standard_normal((batch, sizes[0])).astype(dtype)
    target = rng.standard_normal((batch, sizes[-1])).astype(dtype)
    return x, target


# ------------------------------------------------------------------ minipg

def minipg_step(case, dtype):
    """A closure running one minipg step (or one forward for acting)."""
    from .autodiff import no_grad, ops
    from .nn import MLP
    from .optim import Adam

    net = MLP(case["sizes"], activation=case["activation"], rng=0, dtype=dtype)
    x, target = _data(case, dtype)
    if not case["train"]:
        def act():
            with no_grad():
                return net(x)
        return act
    opt = Adam(net, lr=1e-3)

    def step():
        opt.zero_grad()
        loss = ops.square(net(x) - target).mean()
        loss.backward()
        opt.step()
    return step


# ------------------------------------------------------------- NumPy floor

class _NumpyMLP:
    """Hand-written forward/backward with every parameter in one flat buffer."""

    def __init__(self, sizes, activation, dtype):
        rng = np.random.default_rng(0)
        shapes = []
        for n_in, n_out in zip(sizes[:-1], sizes[1:]):
            shapes += [(n_in, n_out), (n_out,)]
        total = sum(int(np.prod(s)) for s in shapes)
        self.flat = (rng.standard_normal(total) * 0.1).astype(dtype)
        self.grad = np.zeros(total, dtype=dtype)
        self.params, self.grads, offset = [], [], 0
        for s in shapes:
            n = int(np.prod(s))
            self.params.append(self.flat[offset:offset + n].reshape(s))
            self.grads.append(self.grad[offset:offset + n].reshape(s))
            offset += n
        self.tanh = activation == "tanh"
        self.m = np.zeros_like(self.flat)
        self.v = np.zeros_like(self.flat)
        self.t = 0

    def forward(self, x):
        hs = [x]
        n_layers = len(self.params) // 2
        for i in range(n_layers):
            W, b = self.params[2 * i], self.params[2 * i + 1]
            z = hs[-1] @ W
            z += b
            if i < n_layers - 1:
                z = np.tanh(z) if self.tanh else np.maximum(z, 0)
            hs.append(z)
        return hs

    def step(self, x, target):
        hs = self.forward(x)
        y = hs[-1]
        g = (2.0 / y.size) * (y - target)         # d mean((y - t)^2) / dy
        n_layers = len(self.params) // 2
        for i in reversed(range(n_layers)):
            h_in = hs[i]
            np.matmul(h_in.T, g, out=self.grads[2 * i])
            np.sum(g, axis=0, out=self.grads[2 * i + 1])
            if i > 0:
                g = g @ self.params[2 * i].T
                h = hs[i]
                g *= (1 - h * h) if self.tanh else (h > 0)
        self._adam()

    def _adam(self, lr=1e-3, b1=0.9, b2=0.999, eps=1e-8):
        self.t += 1
        g = self.grad
        self.m *= b1
        self.m += (1 - b1) * g
        self.v *= b2
        self.v += (1 - b2) * (g * g)
        denom = np.sqrt(self.v / (1 - b2 ** self.t))
        denom += eps
        self.flat -= (lr / (1 - b1 ** self.t)) * self.m / denom


def floor_step(case, dtype):
    net = _NumpyMLP(case["sizes"], case["activation"], dtype)
    x, target = _data(case, dtype)
    if not case["train"]:
        return lambda: net.forward(x)[-1]
    return lambda: net.step(x, target)


# ----------------------------------------------------------------- PyTorch

def torch_step(case, dtype, threads=1):
    """A closure for the same step in PyTorch (`threads` threads), or None without torch."""
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(threads)
    tdtype = torch.float64 if dtype == np.float64 else torch.float32
    layers = []
    sizes = case["sizes"]
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(torch.nn.Linear(n_in, n_out))
        if i < len(sizes) - 2:
            layers.append(torch.nn.Tanh() if case["activation"] == "tanh" else torch.nn.ReLU())
    net = torch.nn.Sequential(*layers).to(tdtype)
    x, target = (torch.from_numpy(a) for a in _data(case, dtype))
    if not case["train"]:
        def act():
            with torch.no_grad():
                return net(x)
        return act
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)

    def step():
        opt.zero_grad()
        loss = ((net(x) - target) ** 2).mean()
        loss.backward()
        opt.step()
    return step


# ------------------------------------------------------------------ kernels

def kernel_rows(repeats, number=50):
    """(name, numba seconds, numpy seconds) for each kernel against its twin."""
    from .kernels import (adam_update_numba, adam_update_numpy, categorical_sample_rows_numba,
                          categorical_sample_rows_numpy, discounted_returns_numba,
                          discounted_returns_numpy, gae_numba, gae_numpy,
                          log_softmax_rows_numba, log_softmax_rows_numpy,
                          log_softmax_rows_vjp_numba, log_softmax_rows_vjp_numpy,
                          n_step_returns_numba, n_step_returns_numpy,
                          polyak_update_kernel_numba, polyak_update_kernel_numpy,
                          retrace_numba, retrace_numpy, rmsprop_update_numba,
                          rmsprop_update_numpy, sgd_update_numba, sgd_update_numpy)
    from .kernels import (categorical_projection_numba, categorical_projection_numpy,
                          sum_tree_find_numba, sum_tree_find_numpy, sum_tree_update_numba,
                          sum_tree_update_numpy)

    rng = np.random.default_rng(0)
    T, N = 256, 8
    r = rng.standard_normal((T, N))
    v = rng.standard_normal((T, N))
    nv = rng.standard_normal((T, N))
    term = rng.random((T, N)) < 0.02
    trunc = (rng.random((T, N)) < 0.01) & ~term
    P = 100_000
    p, g, m, s = (rng.standard_normal(P) for _ in range(4))
    s = np.abs(s)
    empty = np.zeros(0)
    logits = rng.standard_normal((256, 2))        # a minibatch of CartPole's policy
    z, gz, u = np.empty_like(logits), rng.standard_normal((256, 2)), rng.random(256)
    out2, actions = np.empty_like(logits), np.empty(256, dtype=np.int64)
    log_softmax_rows_numba(logits, z)
    # D4PG: a minibatch of 256 target distributions over 51 atoms; a 2^17-leaf sum tree
    probs51 = rng.dirichlet(np.ones(51), size=256)
    r256, d256 = rng.standard_normal(256) * 5, np.full(256, 0.99 ** 5)
    tree = np.zeros(2 * 2 ** 17)
    sum_tree_update_numba(tree, np.arange(100_000), rng.random(100_000))
    leaves, prios, values = rng.integers(0, 100_000, 256), rng.random(256), rng.random(256)
    rows = [
        ("gae (256x8)", lambda: gae_numba(r, v, nv, term, trunc, 0.99, 0.95),
         lambda: gae_numpy(r, v, nv, term, trunc, 0.99, 0.95)),
        ("discounted_returns (256x8)",
         lambda: discounted_returns_numba(r, term, trunc, 0.99, nv),
         lambda: discounted_returns_numpy(r, term, trunc, 0.99, nv)),
        ("n_step_returns n=5 (256x8)",
         lambda: n_step_returns_numba(r, nv, term, trunc, 0.99, 5),
         lambda: n_step_returns_numpy(r, nv, term, trunc, 0.99, 5)),
        ("retrace (20x4, ACER's segments)",
         lambda: retrace_numba(r[:20, :4], v[:20, :4], nv[:20, :4], nv[:20, :4],
                               np.abs(v[:20, :4]), term[:20, :4], trunc[:20, :4], 0.99),
         lambda: retrace_numpy(r[:20, :4], v[:20, :4], nv[:20, :4], nv[:20, :4],
                               np.abs(v[:20, :4]), term[:20, :4], trunc[:20, :4], 0.99)),
        ("adam_update (100k)",
         lambda: adam_update_numba(p, g, m, s, 1e-9, 0.9, 0.999, 1e-8, 0.0, 10),
         lambda: adam_update_numpy(p, g, m, s, 1e-9, 0.9, 0.999, 1e-8, 0.0, 10)),
        ("rmsprop_update (100k)",
         lambda: rmsprop_update_numba(p, g, s, empty, empty, 1e-9, 0.99, 1e-8, 0.0, 0.0,
                                         False),
         lambda: rmsprop_update_numpy(p, g, s, empty, empty, 1e-9, 0.99, 1e-8, 0.0, 0.0,
                                         False)),
        ("sgd_update momentum (100k)",
         lambda: sgd_update_numba(p, g, m, 1e-9, 0.9, 0.0, False, 0.0, False),
         lambda: sgd_update_numpy(p, g, m, 1e-9, 0.9, 0.0, False, 0.0, False)),
        ("polyak_update (100k)",
         lambda: polyak_update_kernel_numba(p, m, 1e-6),
         lambda: polyak_update_kernel_numpy(p, m, 1e-6)),
        ("log_softmax_rows (256x2)",
         lambda: log_softmax_rows_numba(logits, out2),
         lambda: log_softmax_rows_numpy(logits, out2)),
        ("log_softmax_rows_vjp (256x2)",
         lambda: log_softmax_rows_vjp_numba(gz, z, out2),
         lambda: log_softmax_rows_vjp_numpy(gz, z, out2)),
        ("categorical_sample_rows (256x2)",
         lambda: categorical_sample_rows_numba(z, u, actions),
         lambda: categorical_sample_rows_numpy(z, u, actions)),
        ("categorical_projection (256x51)",
         lambda: categorical_projection_numba(probs51, r256, d256, -150.0, 150.0),
         lambda: categorical_projection_numpy(probs51, r256, d256, -150.0, 150.0)),
        ("sum_tree_update (256 of 100k)",
         lambda: sum_tree_update_numba(tree, leaves, prios),
         lambda: sum_tree_update_numpy(tree, leaves, prios)),
        ("sum_tree_find (256 of 100k)",
         lambda: sum_tree_find_numba(tree, values * tree[1]),
         lambda: sum_tree_find_numpy(tree, values * tree[1])),
    ]
    return [(name, _time(a, repeats, number), _time(b, repeats, number)) for name, a, b in rows]


# -------------------------------------------------------------------- main

def _fmt_us(seconds):
    return "-" if seconds is None else f"{seconds * 1e6:9.1f}"


def _fmt_ratio(x):
    return "-" if x is None else f"{x:.2f}"


def run(repeats=7, quick=False, cases=("a", "b", "c"), dtypes=("float64", "float32"),
        kernels=True, out=print, threads=1, blas_threads=None):
    """Print the benchmark tables; return the rows as a list of dicts.

    `threads` is given to PyTorch; NumPy's BLAS runs on `blas_threads` threads
    (minipg.threads.limit; None: the count in effect).  The header prints the
    count threadpoolctl reports in effect.
    """
    if blas_threads is not None:
        with limit(blas_threads):
            return run(repeats, quick, cases, dtypes, kernels, out, threads)
    rows = []
    blas = current_blas_threads()
    blas = "no BLAS pool found" if blas is None else blas
    out(f"minipg bench: median of {repeats} repeats; times in us; NumPy BLAS threads: {blas}; "
        f"PyTorch threads: {threads}")
    out(f"{'case':<6}{'dtype':<9}{'minipg':>10}{'floor':>10}{'torch':>10}"
        f"{'mpg/floor':>11}{'goal':>6}{'mpg/torch':>11}{'goal':>6}")
    for key in cases:
        case = CASES[key]
        number = {"a": 200, "b": 40, "c": 2000}[key]
        if quick:
            number = max(5, number // 10)
        for name in dtypes:
            dtype = np.dtype(name).type
            fns = {"minipg": minipg_step(case, dtype), "floor": floor_step(case, dtype),
                   "torch": torch_step(case, dtype, threads)}
            times = {k: None for k in fns}
            # alternate the contenders repeat by repeat so drift hits all alike
            samples = {k: [] for k in fns if fns[k] is not None}
            for _ in range(repeats):
                for k in samples:
                    samples[k].append(_time(fns[k], 1, number))
            for k, s in samples.items():
                times[k] = float(np.median(s))
            r_floor = times["minipg"] / times["floor"]
            r_torch = None if times["torch"] is None else times["minipg"] / times["torch"]
            goal_t, goal_f = GOALS[key]
            rows.append(dict(case=key, dtype=name, **{f"{k}_s": v for k, v in times.items()},
                             minipg_over_floor=r_floor, minipg_over_torch=r_torch))
            out(f"{key:<6}{name:<9}{_fmt_us(times['minipg']):>10}{_fmt_us(times['floor']):>10}"
                f"{_fmt_us(times['torch']):>10}{_fmt_ratio(r_floor):>11}"
                f"{_fmt_ratio(goal_f):>6}{_fmt_ratio(r_torch):>11}{_fmt_ratio(goal_t):>6}")
    if kernels:
        out("")
        out(f"{'kernel':<30}{'numba':>10}{'numpy':>10}{'numba/numpy':>13}")
        for name, t_numba, t_numpy in kernel_rows(max(3, repeats // 2), 5 if quick else 50):
            rows.append(dict(kernel=name, numba_s=t_numba, numpy_s=t_numpy))
            out(f"{name:<30}{_fmt_us(t_numba):>10}{_fmt_us(t_numpy):>10}"
                f"{t_numba / t_numpy:>13.2f}")
    return rows
