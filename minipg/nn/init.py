"""Weight initialisers (pure functions returning arrays).

Shapes follow minipg's layout: a dense weight has shape (n_in, n_out), so a
layer computes x @ W + b.
"""

from __future__ import annotations

import numpy as np

__all__ = ["orthogonal", "fan_in_uniform"]


def orthogonal(shape, gain=1.0, rng=None, dtype=np.float64):
    """A (semi-)orthogonal matrix scaled by `gain` (Saxe et al. 2014).

    Built as torch.nn.init.orthogonal_ builds the (n_out, n_in) matrix (QR of
    a Gaussian matrix, signs fixed by diag(R) so the result is uniformly
    distributed), then transposed to minipg's (n_in, n_out) layout: the
    columns of W are orthonormal when n_out <= n_in, the rows otherwise.
    """
    rng = np.random.default_rng(rng)
    n_in, n_out = shape
    rows, cols = n_out, n_in
    a = rng.standard_normal((max(rows, cols), min(rows, cols)))
    q, r = np.linalg.qr(a)
    q *= np.sign(np.diag(r))                      # make the factorisation unique
    if rows < cols:
        q = q.T
    return (gain * q[:rows, :cols]).T.astype(dtype)


def fan_in_uniform(shape, fan_in, rng=None, dtype=np.float64):
    """U(-1/sqrt(fan_in), 1/sqrt(fan_in)): torch.nn.Linear's default."""
    rng = np.random.default_rng(rng)
    bound = 1.0 / np.sqrt(fan_in)
    return rng.uniform(-bound, bound, size=shape).astype(dtype)
