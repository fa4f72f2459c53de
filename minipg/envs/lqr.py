r"""Exact-gradient test bed: discounted linear-quadratic regulator (LQR).

Document: L. Weng, "Policy Gradient Algorithms" (2018), section "DPG" (the
deterministic policy gradient theorem); formulas of
``verification/FORMULAS.md`` ("LQR").  Papers: M. Fazel, R. Ge, S. Kakade,
M. Mesbahi, "Global convergence of policy gradient methods for the linear
quadratic regulator", ICML 2018, Lemma 1 (there with u = -Kx); D. Silver,
G. Lever, N. Heess, T. Degris, D. Wierstra, M. Riedmiller, "Deterministic
policy gradient algorithms", ICML 2014, Theorem 1.

Problem
-------
    x_{t+1} = A x_t + B u_t + w_t,   w_t ~ N(0, W),   x_0 ~ N(0, Sigma0),
    cost c(x, u) = x^T Q x + u^T R u,   C = E[sum_t gamma^t c(x_t, u_t)],  0 < gamma < 1.

Sign convention (ONE throughout): the policy is ``u = K x`` (``K`` of shape
``(m, n)``), closed loop ``L = A + B K``; a Gaussian policy is
``u = K x + sigma * eps``, ``eps ~ N(0, I_m)``, ``sigma`` a scalar or an
``(m,)`` vector (action covariance ``Sigma_a = diag(sigma^2)``).  Costs are
what the formulas minimise; the RL reward is ``r = -c``, so the return is
``J = -C`` and ``grad J = -grad C`` (methods named ``*_return`` / ``q_value``
use rewards, ``cost*`` / ``q_cost*`` use costs).

Exact quantities (derived here; verification/FORMULAS.md "LQR" gives the
u = -Kx form and, in "LQR/The a = +Kx convention", the gradient below):

    P_K     = Q + K^T R K + gamma L^T P_K L                       (value matrix)
    V_K(x)  = x^T P_K x + v,  v = [tr(R Sigma_a) + gamma tr(P_K (W + B Sigma_a B^T))] / (1 - gamma)
    Sigma_K = Sigma0 + gamma/(1-gamma) (W + B Sigma_a B^T) + gamma L Sigma_K L^T
            = sum_t gamma^t E[x_t x_t^T]   (second moment of the UNNORMALISED
              discounted state distribution rho; rho / sum(rho) has second
              moment (1-gamma) Sigma_K)
    C(K)    = tr(P_K Sigma0) + v = tr((Q + K^T R K) Sigma_K) + tr(R Sigma_a)/(1-gamma)
    grad_K C = 2 E_K Sigma_K,   E_K = (R + gamma B^T P_K B) K + gamma B^T P_K A
    Q^K(x,u) = x^T Q x + u^T R u + gamma (Ax+Bu)^T P_K (Ax+Bu) + gamma (tr(P_K W) + v)
    grad_u Q^K(x, Kx) = 2 E_K x,  so  E_{x~rho}[grad_u Q^K(x, Kx) x^T] = 2 E_K Sigma_K   (DPG)
    K* = -(R + gamma B^T P B)^-1 gamma B^T P A with P from the discounted Riccati equation.

Everything needs sqrt(gamma) * spectral_radius(A + B K) < 1 (else the
discounted cost is infinite); :meth:`LQR.check_stable` raises a ValueError.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
from scipy.linalg import solve_discrete_are, solve_discrete_lyapunov

__all__ = ["LQR", "LQRTrajectories", "LQREnv", "random_lqr", "lqr_1d", "lqr_2d"]


def _as_matrix(x, name, shape=None):
    try:
        arr = np.array(x, dtype=np.float64, ndmin=2)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be a real matrix, got {type(x).__name__}") from exc
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a matrix (2-D), got shape {arr.shape}")
    if shape is not None and arr.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite (no NaN or inf)")
    return arr


def _check_symmetric_psd(M, name, definite=False):
    if not np.allclose(M, M.T, rtol=1e-12, atol=1e-12):
        raise ValueError(f"{name} must be symmetric")
    smallest = np.linalg.eigvalsh(M).min()
    scale = max(1.0, np.abs(M).max())
    if definite and smallest <= 1e-12 * scale:
        raise ValueError(f"{name} must be positive definite; smallest eigenvalue {smallest:.3g}")
    if not definite and smallest < -1e-12 * scale:
        raise ValueError(
            f"{name} must be positive semi-definite; smallest eigenvalue {smallest:.3g}"
        )


def _psd_factor(M):
    """F with F F^T = M for a symmetric PSD M (eigen-decomposition; works when M is singular)."""
    eigenvalues, eigenvectors = np.linalg.eigh(M)
    return eigenvectors * np.sqrt(np.clip(eigenvalues, 0.0, None))


def _check_rng(rng):
    if not isinstance(rng, np.random.Generator):
        raise TypeError(
            "rng must be a numpy.random.Generator (np.random.default_rng(seed)), "
            f"got {type(rng).__name__}"
        )


def _check_positive_int(x, name):
    if not isinstance(x, numbers.Integral) or isinstance(x, bool) or x < 1:
        raise ValueError(f"{name} must be a positive integer, got {x!r}")
    return int(x)


@dataclass(frozen=True)
class LQRTrajectories:
    """Sampled trajectories, batch-major.

    states (N, H+1, n): x_0 .. x_H;  actions (N, H, m): u_t = K x_t + sigma * eps_t;
    costs (N, H): c(x_t, u_t);  action_noise (N, H, m): eps_t ~ N(0, I) (zeros for a
    deterministic policy); gamma: the problem's discount.
    """

    states: np.ndarray
    actions: np.ndarray
    costs: np.ndarray
    action_noise: np.ndarray
    gamma: float

    @property
    def rewards(self):
        """r_t = -c(x_t, u_t), shape (N, H)."""
        return -self.costs

    def discounted_costs(self):
        r"""sum_{t<H} gamma^t c_t of each trajectory, shape (N,)."""
        return self.costs @ (self.gamma ** np.arange(self.costs.shape[1]))


class LQR:
    r"""Discounted LQR with linear policies u = K x (+ sigma * eps); see the module docstring.

    Parameters
    ----------
    A (n, n), B (n, m) : dynamics x' = A x + B u + w.
    Q (n, n) symmetric PSD, R (m, m) symmetric positive definite : cost x^T Q x + u^T R u.
    gamma : float in (0, 1).
    W (n, n) symmetric PSD : covariance of w (default 0: deterministic dynamics).
    Sigma0 (n, n) symmetric PSD : covariance of x_0 ~ N(0, Sigma0) (default I).
    """

    def __init__(self, A, B, Q, R, gamma, W=None, Sigma0=None):
        A = _as_matrix(A, "A")
        n = A.shape[0]
        if A.shape != (n, n):
            raise ValueError(f"A must be square, got shape {A.shape}")
        B = _as_matrix(B, "B")
        if B.shape[0] != n:
            raise ValueError(f"B must have shape (n, m) with n = {n}, got {B.shape}")
        m = B.shape[1]
        Q = _as_matrix(Q, "Q", (n, n))
        R = _as_matrix(R, "R", (m, m))
        _check_symmetric_psd(Q, "Q")
        _check_symmetric_psd(R, "R", definite=True)
        if not isinstance(gamma, numbers.Real) or not 0.0 < float(gamma) < 1.0:
            raise ValueError(
                "gamma must be a real number in (0, 1) (noise makes the cost infinite at "
                f"gamma = 1), got {gamma!r}"
            )
        W = np.zeros((n, n)) if W is None else _as_matrix(W, "W", (n, n))
        Sigma0 = np.eye(n) if Sigma0 is None else _as_matrix(Sigma0, "Sigma0", (n, n))
        _check_symmetric_psd(W, "W")
        _check_symmetric_psd(Sigma0, "Sigma0")
        self.A, self.B, self.Q, self.R, self.W, self.Sigma0 = A, B, Q, R, W, Sigma0
        for arr in (A, B, Q, R, W, Sigma0):
            arr.setflags(write=False)
        self.gamma = float(gamma)
        self.n_state, self.n_action = n, m

    # -- checks ---------------------------------------------------------------

    def _check_gain(self, K):
        return _as_matrix(K, "K", (self.n_action, self.n_state))

    def _action_covariance(self, sigma):
        """Sigma_a = diag(sigma^2) from a scalar or (m,) vector of standard deviations >= 0."""
        s = np.asarray(sigma, dtype=np.float64)
        if s.ndim == 0:
            s = np.full(self.n_action, float(s))
        if s.shape != (self.n_action,) or not np.all(np.isfinite(s)) or np.any(s < 0):
            raise ValueError(
                "sigma must be a finite non-negative scalar or a vector of shape "
                f"({self.n_action},), got {sigma!r}"
            )
        return np.diag(s**2), s

    def closed_loop(self, K):
        """L = A + B K."""
        return self.A + self.B @ self._check_gain(K)

    def is_stable(self, K):
        """True when sqrt(gamma) * spectral_radius(A + B K) < 1 (finite discounted cost)."""
        return np.sqrt(self.gamma) * np.max(np.abs(np.linalg.eigvals(self.closed_loop(K)))) < 1.0

    def check_stable(self, K):
        """Raise ValueError unless sqrt(gamma) * spectral_radius(A + B K) < 1; return K (array)."""
        K = self._check_gain(K)
        radius = np.max(np.abs(np.linalg.eigvals(self.A + self.B @ K)))
        if np.sqrt(self.gamma) * radius >= 1.0:
            raise ValueError(
                "K is not stabilising under discounting: sqrt(gamma) * spectral_radius(A + B K)"
                f" = {np.sqrt(self.gamma) * radius:.6g} >= 1, so the discounted cost is "
                "infinite (convention u = K x)"
            )
        return K

    # -- exact quantities -----------------------------------------------------

    def value_matrix(self, K):
        r"""P_K solving P = Q + K^T R K + gamma L^T P L, L = A + B K (discrete Lyapunov)."""
        K = self.check_stable(K)
        L = self.A + self.B @ K
        # solve_discrete_lyapunov(a, q) solves X = a X a^T + q; a = sqrt(gamma) L^T.
        P = solve_discrete_lyapunov(np.sqrt(self.gamma) * L.T, self.Q + K.T @ self.R @ K)
        return (P + P.T) / 2

    def state_covariance(self, K, sigma=0.0):
        r"""Sigma_K = sum_t gamma^t E[x_t x_t^T], solving
        Sigma = Sigma0 + gamma/(1-gamma) (W + B Sigma_a B^T) + gamma L Sigma L^T.

        The second moment of the unnormalised discounted state distribution rho.
        """
        K = self.check_stable(K)
        Sigma_a, _ = self._action_covariance(sigma)
        L = self.A + self.B @ K
        noise = self.W + self.B @ Sigma_a @ self.B.T
        source = self.Sigma0 + self.gamma / (1.0 - self.gamma) * noise
        Sigma = solve_discrete_lyapunov(np.sqrt(self.gamma) * L, source)
        return (Sigma + Sigma.T) / 2

    def value_constant(self, K, sigma=0.0):
        r"""v = [tr(R Sigma_a) + gamma tr(P_K (W + B Sigma_a B^T))] / (1 - gamma).

        The constant of the value function V_K(x) = x^T P_K x + v.
        """
        return self._value_constant(self.value_matrix(K), sigma)

    def _value_constant(self, P, sigma):
        """v from a value matrix P already computed (one Lyapunov solve per public call)."""
        Sigma_a, _ = self._action_covariance(sigma)
        noise = self.W + self.B @ Sigma_a @ self.B.T
        numerator = np.trace(self.R @ Sigma_a) + self.gamma * np.trace(P @ noise)
        return float(numerator) / (1.0 - self.gamma)

    def cost(self, K, sigma=0.0):
        r"""C(K, sigma) = tr(P_K Sigma0) + v,
        v = [tr(R Sigma_a) + gamma tr(P_K (W + B Sigma_a B^T))] / (1 - gamma).

        sigma = 0: C(K) = tr(P_K Sigma0) + gamma/(1-gamma) tr(P_K W) (Fazel et al. 2018).
        """
        P = self.value_matrix(K)
        return float(np.trace(P @ self.Sigma0)) + self._value_constant(P, sigma)

    def cost_gradient(self, K, sigma=0.0):
        r"""grad_K C = 2 [(R + gamma B^T P_K B) K + gamma B^T P_K A] Sigma_K, shape (m, n).

        With a Gaussian policy P_K is unchanged and Sigma_K includes the action noise.
        """
        K = self.check_stable(K)
        P = self.value_matrix(K)
        E = (self.R + self.gamma * self.B.T @ P @ self.B) @ K + self.gamma * self.B.T @ P @ self.A
        return 2.0 * E @ self.state_covariance(K, sigma)

    def cost_sigma_gradient(self, K, sigma):
        r"""dC/dsigma_i = 2 sigma_i [R + gamma B^T P_K B]_ii / (1 - gamma), shape (m,).

        From C = ... + tr((R + gamma B^T P_K B) Sigma_a) / (1 - gamma), Sigma_a = diag(sigma^2).
        One entry per action; for one std shared by all actions, dC/dsigma is the sum.
        """
        P = self.value_matrix(K)
        _, s = self._action_covariance(sigma)
        H_uu = self.R + self.gamma * self.B.T @ P @ self.B
        return 2.0 * s * np.diag(H_uu) / (1.0 - self.gamma)

    def expected_return(self, K, sigma=0.0):
        r"""J = -C(K, sigma) (reward = -cost)."""
        return -self.cost(K, sigma)

    def return_gradient(self, K, sigma=0.0):
        r"""grad_K J = -grad_K C, shape (m, n)."""
        return -self.cost_gradient(K, sigma)

    def truncated_cost(self, K, horizon, sigma=0.0):
        r"""C_H = sum_{t<H} gamma^t E[c_t]
            = sum_{t<H} gamma^t [tr((Q + K^T R K) S_t) + tr(R Sigma_a)],

        S_0 = Sigma0, S_{t+1} = L S_t L^T + W + B Sigma_a B^T: the exact mean of a
        discounted return over H steps (no stability requirement).
        """
        K = self._check_gain(K)
        horizon = _check_positive_int(horizon, "horizon")
        Sigma_a, _ = self._action_covariance(sigma)
        L = self.A + self.B @ K
        noise = self.W + self.B @ Sigma_a @ self.B.T
        cost_matrix = self.Q + K.T @ self.R @ K
        action_cost = float(np.trace(self.R @ Sigma_a))
        S, total = self.Sigma0.copy(), 0.0
        for t in range(horizon):
            total += self.gamma**t * (float(np.trace(cost_matrix @ S)) + action_cost)
            S = L @ S @ L.T + noise
        return total

    def q_matrix(self, K):
        r"""H = [[Q + gamma A^T P A, gamma A^T P B], [gamma B^T P A, R + gamma B^T P B]], P = P_K.

        Q^K(x, u) = [x; u]^T H [x; u] + q_constant.
        """
        return self._q_matrix(self.value_matrix(K))

    def _q_matrix(self, P):
        g = self.gamma
        top = np.hstack([self.Q + g * self.A.T @ P @ self.A, g * self.A.T @ P @ self.B])
        bottom = np.hstack([g * self.B.T @ P @ self.A, self.R + g * self.B.T @ P @ self.B])
        return np.vstack([top, bottom])

    def q_constant(self, K, sigma=0.0):
        r"""gamma (tr(P_K W) + v): the constant of Q^K.

        For sigma = 0 it equals v = gamma/(1-gamma) tr(P_K W).
        """
        return self._q_constant(self.value_matrix(K), sigma)

    def _q_constant(self, P, sigma):
        return self.gamma * (float(np.trace(P @ self.W)) + self._value_constant(P, sigma))

    def _check_batch(self, x, name, dim):
        arr = np.asarray(x, dtype=np.float64)
        if arr.ndim == 1:
            arr = arr[None, :]
        if arr.ndim != 2 or arr.shape[1] != dim:
            raise ValueError(f"{name} must have shape (N, {dim}) or ({dim},), got {np.shape(x)}")
        return arr

    def q_cost(self, K, x, u, sigma=0.0):
        r"""Q^K(x, u) = c(x, u) + gamma E[V_K(A x + B u + w)] (costs).

        Batches x (N, n), u (N, m) -> (N,); = [x; u]^T H [x; u] + q_constant.
        """
        x = self._check_batch(x, "x", self.n_state)
        u = self._check_batch(u, "u", self.n_action)
        z = np.hstack([x, u])
        P = self.value_matrix(K)
        return np.einsum("ni,ij,nj->n", z, self._q_matrix(P), z) + self._q_constant(P, sigma)

    def q_cost_grad_u(self, K, x, u):
        r"""grad_u Q^K(x, u) = 2 (R + gamma B^T P B) u + 2 gamma B^T P A x, shape (N, m)."""
        x = self._check_batch(x, "x", self.n_state)
        u = self._check_batch(u, "u", self.n_action)
        H = self.q_matrix(K)
        n = self.n_state
        return 2.0 * (x @ H[n:, :n].T + u @ H[n:, n:].T)

    def q_value(self, K, x, u, sigma=0.0):
        r"""Q in rewards: -Q^K_cost(x, u), shape (N,)."""
        return -self.q_cost(K, x, u, sigma)

    def q_value_grad_u(self, K, x, u):
        r"""grad_u of Q in rewards: -grad_u Q^K_cost(x, u), shape (N, m)."""
        return -self.q_cost_grad_u(K, x, u)

    def value_cost(self, K, x, sigma=0.0):
        r"""V_K(x) = x^T P_K x + v (costs), batch x (N, n) -> (N,)."""
        x = self._check_batch(x, "x", self.n_state)
        P = self.value_matrix(K)
        return np.einsum("ni,ij,nj->n", x, P, x) + self._value_constant(P, sigma)

    def stage_cost(self, x, u):
        r"""c(x, u) = x^T Q x + u^T R u, batches -> (N,)."""
        x = self._check_batch(x, "x", self.n_state)
        u = self._check_batch(u, "u", self.n_action)
        return np.einsum("ni,ij,nj->n", x, self.Q, x) + np.einsum("ni,ij,nj->n", u, self.R, u)

    def optimal_value_matrix(self):
        r"""P* from the discounted Riccati equation
        P = Q + gamma A^T P A - gamma^2 A^T P B (R + gamma B^T P B)^-1 B^T P A
        (scipy's DARE on sqrt(gamma) A, sqrt(gamma) B)."""
        sg = np.sqrt(self.gamma)
        P = solve_discrete_are(sg * self.A, sg * self.B, self.Q, self.R)
        return (P + P.T) / 2

    def optimal_gain(self):
        r"""K* = -(R + gamma B^T P* B)^-1 gamma B^T P* A (u = K* x); grad C(K*) = 0."""
        P = self.optimal_value_matrix()
        return -np.linalg.solve(
            self.R + self.gamma * self.B.T @ P @ self.B, self.gamma * self.B.T @ P @ self.A
        )

    # -- sampling -------------------------------------------------------------

    def sample_initial_states(self, n, rng):
        """x_0 ~ N(0, Sigma0), shape (n, n_state)."""
        _check_rng(rng)
        n = _check_positive_int(n, "n")
        return rng.standard_normal((n, self.n_state)) @ _psd_factor(self.Sigma0).T

    def sample_trajectories(self, K, n, horizon, rng, sigma=0.0):
        r"""n trajectories of H steps: x_0 ~ N(0, Sigma0), u_t = K x_t + sigma eps_t,
        x_{t+1} = A x_t + B u_t + w_t.  Returns :class:`LQRTrajectories` (no stability needed)."""
        K = self._check_gain(K)
        horizon = _check_positive_int(horizon, "horizon")
        _, s = self._action_covariance(sigma)
        x = self.sample_initial_states(n, rng)
        W_factor = _psd_factor(self.W)
        states = np.empty((n, horizon + 1, self.n_state))
        actions = np.empty((n, horizon, self.n_action))
        eps = np.zeros((n, horizon, self.n_action))
        states[:, 0] = x
        for t in range(horizon):
            if np.any(s > 0):
                eps[:, t] = rng.standard_normal((n, self.n_action))
            u = x @ K.T + s * eps[:, t]
            actions[:, t] = u
            x = x @ self.A.T + u @ self.B.T + rng.standard_normal((n, self.n_state)) @ W_factor.T
            states[:, t + 1] = x
        x_cost = np.einsum("nti,ij,ntj->nt", states[:, :-1], self.Q, states[:, :-1])
        u_cost = np.einsum("nti,ij,ntj->nt", actions, self.R, actions)
        costs = x_cost + u_cost
        return LQRTrajectories(states, actions, costs, eps, self.gamma)

    def sample_states(self, K, n, rng, sigma=0.0):
        r"""n i.i.d. states from the NORMALISED discounted distribution rho / sum(rho):
        draw t ~ Geometric, Pr(t) = (1 - gamma) gamma^t, and return x_t of a fresh
        trajectory.  E[x x^T] = (1 - gamma) Sigma_K.  Shape (n, n_state)."""
        K = self.check_stable(K)
        n = _check_positive_int(n, "n")
        _check_rng(rng)
        _, s = self._action_covariance(sigma)
        times = rng.geometric(1.0 - self.gamma, size=n) - 1  # numpy's geometric starts at 1
        order = np.argsort(-times, kind="stable")  # longest first: the moving ones are a prefix
        n_moving = np.searchsorted(-times[order], -np.arange(int(times.max())), side="left")
        x = self.sample_initial_states(n, rng)
        W_factor = _psd_factor(self.W)
        for m in n_moving:  # m = number of trajectories whose sampled time is still ahead
            xm = x[:m]
            u = xm @ K.T + s * rng.standard_normal((m, self.n_action))
            x[:m] = xm @ self.A.T + u @ self.B.T + rng.standard_normal(xm.shape) @ W_factor.T
        out = np.empty_like(x)
        out[order] = x  # the i-th sorted trajectory belongs to draw order[i]
        return out


class LQREnv(gym.Env):
    """An :class:`LQR` as a gymnasium environment, truncated at ``horizon`` steps.

    Observation x (Box(-inf, inf, (n,), float64)), action u (Box(-inf, inf,
    (m,), float64), used unclipped), reward -c(x, u) = -(x^T Q x + u^T R u).
    The LQR is a discounted INFINITE-horizon problem; this environment cuts it
    after ``horizon`` steps with ``truncated=True`` (never ``terminated``), so
    the mean discounted return of an episode is ``-lqr.truncated_cost(K,
    horizon)``, which tends to ``-lqr.cost(K)`` as the horizon grows.  The
    environment does not discount.  Seed with ``reset(seed=...)``.
    """

    metadata = {"render_modes": []}

    def __init__(self, lqr, horizon):
        if not isinstance(lqr, LQR):
            raise TypeError(f"lqr must be an LQR, got {type(lqr).__name__}")
        self.lqr = lqr
        self.horizon = _check_positive_int(horizon, "horizon")
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (lqr.n_state,), dtype=np.float64)
        self.action_space = gym.spaces.Box(-np.inf, np.inf, (lqr.n_action,), dtype=np.float64)
        self._W_factor = _psd_factor(lqr.W)
        self._Sigma0_factor = _psd_factor(lqr.Sigma0)
        self._x, self._t = None, 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._x = self._Sigma0_factor @ self.np_random.standard_normal(self.lqr.n_state)
        self._t = 0
        return self._x.copy(), {}

    def step(self, action):
        if self._x is None:
            raise RuntimeError("call reset() before step()")
        u = np.asarray(action, dtype=np.float64).reshape(-1)
        if u.shape != (self.lqr.n_action,) or not np.all(np.isfinite(u)):
            raise ValueError(
                f"action must be a finite vector of shape ({self.lqr.n_action},), got {action!r}"
            )
        x = self._x
        cost = float(x @ self.lqr.Q @ x + u @ self.lqr.R @ u)
        w = self._W_factor @ self.np_random.standard_normal(self.lqr.n_state)
        self._x = self.lqr.A @ x + self.lqr.B @ u + w
        self._t += 1
        return self._x.copy(), -cost, False, self._t >= self.horizon, {}


# ---------------------------------------------------------------------------
# Constructors
# ---------------------------------------------------------------------------


def random_lqr(n_state, n_action, seed, gamma=0.9, open_loop_radius=0.9, noise_scale=0.1):
    r"""A random LQR whose open loop is stable (K = 0 is stabilising).

    A ~ N(0,1) rescaled to spectral radius ``open_loop_radius`` (< 1), B ~ N(0,1),
    Q = M M^T / n + 0.1 I, R = N N^T / m + 0.1 I, W = noise_scale^2 I, Sigma0 = I.
    """
    n_state = _check_positive_int(n_state, "n_state")
    n_action = _check_positive_int(n_action, "n_action")
    if not 0.0 < open_loop_radius < 1.0:
        raise ValueError(f"open_loop_radius must be in (0, 1), got {open_loop_radius!r}")
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((n_state, n_state))
    A *= open_loop_radius / np.max(np.abs(np.linalg.eigvals(A)))
    B = rng.standard_normal((n_state, n_action))
    M = rng.standard_normal((n_state, n_state))
    N = rng.standard_normal((n_action, n_action))
    Q = M @ M.T / n_state + 0.1 * np.eye(n_state)
    R = N @ N.T / n_action + 0.1 * np.eye(n_action)
    return LQR(A, B, Q, R, gamma, W=noise_scale**2 * np.eye(n_state), Sigma0=np.eye(n_state))


def lqr_1d(gamma=0.9):
    r"""Scalar LQR: x' = 1.1 x + u + w, w ~ N(0, 0.1), cost x^2 + 0.5 u^2, x_0 ~ N(0, 1).

    Open loop unstable for gamma > 1/1.21; stabilising gains satisfy
    |1.1 + K| < 1/sqrt(gamma).
    """
    return LQR([[1.1]], [[1.0]], [[1.0]], [[0.5]], gamma, W=[[0.1]], Sigma0=[[1.0]])


def lqr_2d(gamma=0.95, dt=0.1):
    r"""Double integrator (position, velocity), one force input:
    A = [[1, dt], [0, 1]], B = [[dt^2/2], [dt]], Q = I, R = 0.1, W = 0.01 I, Sigma0 = I."""
    A = [[1.0, dt], [0.0, 1.0]]
    B = [[0.5 * dt**2], [dt]]
    return LQR(A, B, np.eye(2), [[0.1]], gamma, W=0.01 * np.eye(2), Sigma0=np.eye(2))
