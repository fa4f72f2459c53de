r"""Exploration noise for deterministic policies (DDPG, TD3).

References: L. Weng, "Policy Gradient Algorithms" (2018), section "DDPG"
(the exploration policy :math:`\mu'(s) = \mu_\theta(s) + \mathcal{N}`) and
section "TD3" (Gaussian exploration and target-policy smoothing noise);
G. E. Uhlenbeck and L. S. Ornstein, "On the Theory of the Brownian
Motion", Physical Review 36, 823 (1930); T. P. Lillicrap et al.,
"Continuous control with deep reinforcement learning", arXiv:1509.02971
(2015), section 7 (OU noise with :math:`\theta = 0.15`, :math:`\sigma = 0.2`);
S. Fujimoto, H. van Hoof, D. Meger, "Addressing Function Approximation Error
in Actor-Critic Methods", ICML 2018 (uncorrelated Gaussian noise suffices).

Both processes are stateful callables: ``noise()`` returns the next sample
(a fresh ndarray of shape ``size``), ``noise.reset()`` starts a new episode.
"""

from __future__ import annotations

import numpy as np

__all__ = ["GaussianNoise", "OrnsteinUhlenbeckNoise"]


def _rng(rng):
    """A numpy Generator: rng itself, or default_rng(rng) for a seed / None."""
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None or isinstance(rng, (int, np.integer, np.random.SeedSequence)):
        return np.random.default_rng(rng)
    raise ValueError(f"rng must be a numpy Generator, an integer seed or None; got "
                     f"{type(rng).__name__}")


def _size(size, owner):
    """size as a tuple of non-negative ints."""
    size = (int(size),) if np.isscalar(size) else tuple(int(s) for s in size)
    if any(s < 0 for s in size):
        raise ValueError(f"{owner}: size {size} must have non-negative entries")
    return size


def _check(name, value, size, owner, accepted, positive=False):
    """value as a float array broadcasting to size, within the accepted range."""
    arr = np.asarray(value, dtype=np.float64)
    ok = np.isfinite(arr) & ((arr > 0) if positive else (arr >= 0))
    if not np.all(ok):
        raise ValueError(f"{owner}: {name} = {value!r} is out of range; accepted: {accepted}")
    try:
        np.broadcast_shapes(arr.shape, size)
    except ValueError:
        raise ValueError(f"{owner}: {name} of shape {arr.shape} does not broadcast to size "
                         f"{size}") from None
    return arr


class GaussianNoise:
    r"""Uncorrelated noise :math:`x_k = \sigma\,\xi_k`, :math:`\xi_k \sim \mathcal{N}(0, I)`.

    Parameters
    ----------
    sigma : float or array broadcasting to ``size``, finite and >= 0.
    size : int or tuple, the shape of each sample (e.g. the action shape).
    rng : numpy Generator, integer seed or None.

    ``reset()`` does nothing (the process has no state); it exists so the
    two noises are interchangeable.
    """

    def __init__(self, sigma, size, rng=None):
        owner = "GaussianNoise"
        self.size = _size(size, owner)
        self.sigma = _check("sigma", sigma, self.size, owner, "finite sigma >= 0")
        self.rng = _rng(rng)

    def __call__(self):
        r"""The next sample :math:`\sigma\xi`, an ndarray of shape ``size``."""
        return self.sigma * self.rng.standard_normal(self.size)

    def reset(self):
        """No state to reset."""

    def __repr__(self):
        return f"GaussianNoise(sigma={self.sigma}, size={self.size})"


class OrnsteinUhlenbeckNoise:
    r"""Temporally correlated Ornstein-Uhlenbeck noise (Euler-Maruyama discretisation).

    .. math::

        x_{k+1} = x_k + \theta(\mu - x_k)\,\Delta t + \sigma\sqrt{\Delta t}\;\xi_k,
        \qquad \xi_k \sim \mathcal{N}(0, I),\quad x_0 = \texttt{x0}\ (\text{default } \mu),

    the form used by the DDPG reference implementations.  The continuous
    process :math:`dx = \theta(\mu - x)dt + \sigma dW` has stationary
    variance :math:`\sigma^2 / (2\theta)`; this recursion's is
    :math:`\sigma^2 / (\theta(2 - \theta\Delta t))`, the same to relative
    order :math:`\theta\Delta t / 2`.  (For :math:`\theta\Delta t \ge 2` the
    recursion is unstable; :math:`\theta = 0` is a random walk.)

    Parameters
    ----------
    size : int or tuple, the shape of each sample.
    theta : mean-reversion rate, finite and >= 0 (default 0.15).
    sigma : volatility, finite and >= 0 (default 0.2).
    dt : time step, finite and > 0 (default 1e-2).
    mu : long-run mean (scalar or array broadcasting to size; default 0).
    x0 : initial state after ``reset()`` (scalar or array broadcasting to
        size; default ``mu``).
    rng : numpy Generator, integer seed or None.

    ``noise()`` advances the state one step and returns a copy of it;
    ``reset()`` puts the state back to ``x0``.
    """

    def __init__(self, size, theta=0.15, sigma=0.2, dt=1e-2, mu=0.0, x0=None, rng=None):
        owner = "OrnsteinUhlenbeckNoise"
        self.size = _size(size, owner)
        self.theta = _check("theta", theta, self.size, owner, "finite theta >= 0")
        self.sigma = _check("sigma", sigma, self.size, owner, "finite sigma >= 0")
        self.dt = _check("dt", dt, self.size, owner, "finite dt > 0", positive=True)
        self.mu = np.asarray(mu, dtype=np.float64)
        if not np.all(np.isfinite(self.mu)):
            raise ValueError(f"{owner}: mu = {mu!r} must be finite")
        try:
            np.broadcast_shapes(self.mu.shape, self.size)
        except ValueError:
            raise ValueError(f"{owner}: mu of shape {self.mu.shape} does not broadcast to size "
                             f"{self.size}") from None
        if x0 is not None:
            x0 = np.asarray(x0, dtype=np.float64)
            if not np.all(np.isfinite(x0)):
                raise ValueError(f"{owner}: x0 = {x0!r} must be finite")
            try:
                np.broadcast_shapes(x0.shape, self.size)
            except ValueError:
                raise ValueError(f"{owner}: x0 of shape {x0.shape} does not broadcast to size "
                                 f"{self.size}") from None
        self.x0 = x0
        self.rng = _rng(rng)
        self.reset()

    def reset(self):
        r"""Restart the process: :math:`x \leftarrow x_0` (``x0``, or ``mu`` when x0 is None)."""
        start = self.mu if self.x0 is None else self.x0
        self.state = np.array(np.broadcast_to(start, self.size), dtype=np.float64)

    def __call__(self):
        r"""Advance one step and return a copy of the new state.

        .. math:: x \leftarrow x + \theta(\mu - x)\Delta t + \sigma\sqrt{\Delta t}\,\xi.
        """
        x = self.state
        self.state = (x + self.theta * (self.mu - x) * self.dt
                      + self.sigma * np.sqrt(self.dt) * self.rng.standard_normal(self.size))
        return self.state.copy()

    def __repr__(self):
        return (f"OrnsteinUhlenbeckNoise(size={self.size}, theta={self.theta}, "
                f"sigma={self.sigma}, dt={self.dt}, mu={self.mu})")
