r"""Action-value actor-critic, the document's online loop.

Document: L. Weng, "Policy Gradient Algorithms" (2018), section
"Actor-Critic" (the simple action-value actor-critic, steps 1-2.5); Sutton &
Barto, *Reinforcement Learning: An Introduction*, 2nd ed., sec. 13.5
(one-step actor-critic, with the factor I <- gamma I).

Every environment step (all ``n_envs`` environments at once):

1. act with a ~ pi(.|s) (drawn at the previous step as that step's a');
   observe r, s';
2. draw a' ~ pi(.|s')                                              (step 2.1)
3. actor:  theta <- theta + alpha_theta I psi grad log pi(a|s)      (step 2.3)
   with psi = Q_w(s, a) (``actor_signal="q"``, the document's loop) or
   psi = Q_w(s, a) - sum_b pi(b|s) Q_w(s, b) (``"advantage"``, the default:
   the subtracted state value does not depend on a, so the expected update
   is the same and its variance smaller; for continuous actions the sum is
   replaced by Q_w(s, b) at one independent draw b ~ pi(.|s), which does not
   depend on a either);
4. delta = r + gamma Q_w(s', a') - Q_w(s, a)                         (step 2.4)
5. critic: w <- w + alpha_w delta grad_w Q_w(s, a)                   (step 2.5)
6. a <- a', s <- s'.

Two learning rates, ``actor_lr`` and ``critic_lr``; SGD (the document's) or
Adam.  ``discount_weighting=True`` applies Sutton & Barto's I_t = gamma^t
(t counted from each episode's start), which makes the actor's expected step
the policy gradient of the discounted objective; the default (False) is the
document's loop, without I.

Episode ends: Q_w(s', a') is 0 when s' is terminal; at a time-limit
truncation s' is the true final observation and a' is drawn there for the
bootstrap, while the next step acts from the reset observation with a fresh
action.  Discrete actions: Q_w is an MLP with one output per action;
continuous actions: Q_w(s, a) is an MLP on the concatenation [s, a].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..autodiff import no_grad, ops
from ..estimators.actor_critic import actor_objective, critic_loss, td_target
from ..nn import MLP
from ..optim import SGD, Adam
from . import ALGORITHMS
from .base import Algorithm, BaseConfig, setting
from .networks import make_policy

__all__ = ["ActorCriticConfig", "ActorCritic", "QCritic"]


@dataclass
class ActorCriticConfig(BaseConfig):
    """Settings of the action-value actor-critic (defaults: CartPole-v1)."""
    total_steps: int = setting(500_000, "environment steps to train for", low=1)
    n_envs: int = setting(8, "parallel environments (one update per vector step)", low=1,
                          high=1024)
    gamma: float = setting(0.99, "discount factor", low=0.0, high=1.0, low_open=True)
    hidden: tuple[int, ...] = setting((64, 64), "hidden layer sizes of both networks")
    activation: str = setting("tanh", "hidden activation", choices=("tanh", "relu"))
    optimizer: str = setting("adam", "'sgd' (the document's update) or 'adam'",
                             choices=("sgd", "adam"))
    actor_lr: float = setting(3e-4, "alpha_theta, the actor's learning rate", low=0.0,
                              low_open=True)
    critic_lr: float = setting(1e-3, "alpha_w, the critic's learning rate", low=0.0,
                               low_open=True)
    actor_signal: str = setting("advantage", "psi: 'q' = Q_w(s,a) as in the document, "
                                "'advantage' = Q_w(s,a) - sum_b pi(b|s) Q_w(s,b)",
                                choices=("q", "advantage"))
    discount_weighting: bool = setting(False, "Sutton & Barto's I <- gamma I factor")
    init_log_std: float = setting(-0.5, "initial log-std of a Gaussian policy")


class QCritic:
    """Q_w(s, a) for discrete (one output per action) or continuous ([s, a] input) actions."""

    def __init__(self, net, discrete):
        self.net = net
        self.discrete = discrete

    def __call__(self, obs, actions):
        if self.discrete:
            q_all = self.net(obs)
            return ops.gather(q_all, actions.astype(np.int64)[:, None], axis=-1).reshape(-1)
        return self.net(ops.concatenate([obs, actions.reshape(len(obs), -1)], axis=-1)).reshape(-1)


@ALGORITHMS.register("actor_critic")
class ActorCritic(Algorithm):
    """Online action-value actor-critic; see the module docstring."""

    name = "actor_critic"
    Config = ActorCriticConfig
    action_kinds = ("discrete", "continuous")
    default_env = "CartPole-v1"
    description = "online action-value actor-critic (Weng's loop; Sutton & Barto 13.5)"
    presets = {"CartPole-v1": {}}

    def __init__(self, config, observation_space, action_space, seed):
        super().__init__(config, observation_space, action_space, seed)
        self.discrete = hasattr(action_space, "n")
        self.policy = make_policy("discrete" if self.discrete else "continuous", self.obs_dim,
                                  self.n_actions, config.hidden, config.activation, self.rng,
                                  self.dtype, config.init_log_std)
        q_in = self.obs_dim if self.discrete else self.obs_dim + self.n_actions
        q_out = self.n_actions if self.discrete else 1
        self.q_net = MLP([q_in, *config.hidden, q_out], activation=config.activation,
                         rng=self.rng, dtype=self.dtype)
        self.critic = QCritic(self.q_net, self.discrete)
        opt = SGD if config.optimizer == "sgd" else Adam
        self.actor_opt = opt(self.policy.parameters(), lr=config.actor_lr)
        self.critic_opt = opt(self.q_net.parameters(), lr=config.critic_lr)
        self.actions = None     # a, drawn for the current observations
        self.t = None           # time index within each environment's episode (for I)

    def modules(self):
        return {"policy": self.policy, "critic": self.q_net}

    def optimizers(self):
        return {"actor": self.actor_opt, "critic": self.critic_opt}

    def extra_state(self):
        if self.actions is None:
            return {}
        return {"actions": self.actions, "t": self.t}

    def load_extra_state(self, arrays):
        if "actions" in arrays:
            self.actions, self.t = np.array(arrays["actions"]), np.array(arrays["t"])

    def act(self, obs, deterministic=False):
        with no_grad():
            dist = self.policy(np.asarray(obs, dtype=self.dtype))
            return dist.mode() if deterministic else dist.sample(self.rng)

    def learn(self, collector):
        cfg = self.config
        if self.actions is None:
            self.actions = self.act(collector.obs)
            self.t = np.zeros(collector.n_envs, dtype=np.int64)
        step = collector.step(self.actions)
        s, a = step.obs, step.actions
        with no_grad():
            next_actions = self.act(step.next_obs)                             # a' ~ pi(.|s')
            q_next = self.critic(step.next_obs, next_actions).data           # Q_w(s', a')
            q_sa = self.critic(s, a).data                                   # Q_w(s, a), old w
            psi = q_sa
            if cfg.actor_signal == "advantage" and self.discrete:
                q_all = self.q_net(s).data
                pi = np.exp(self.policy(s).log_probs.data)
                psi = q_sa - np.sum(pi * q_all, axis=-1)       # Q - sum_b pi(b|s) Q(s, b)
            elif cfg.actor_signal == "advantage":
                # V(s) ~ Q_w(s, b) with an independent b ~ pi(.|s): still independent of a
                psi = q_sa - self.critic(s, self.act(s)).data
        discount_I = cfg.gamma ** self.t if cfg.discount_weighting else None

        # actor, step 2.3: theta += alpha_theta I psi grad log pi(a|s)
        self.actor_opt.zero_grad()
        objective = actor_objective(self.policy(s).log_prob(a), psi, discount_I)
        (-objective).backward()
        self.actor_opt.step()

        # critic, steps 2.4-2.5: w += alpha_w delta grad Q_w(s, a), target held constant
        q_target = td_target(step.rewards, q_next, cfg.gamma, step.terminated)
        self.critic_opt.zero_grad()
        loss = critic_loss(self.critic(s, a), q_target)
        loss.backward()
        self.critic_opt.step()

        # a <- a', s <- s'; a fresh action where an episode ended (s' was not kept)
        done = step.terminated | step.truncated
        self.actions = next_actions
        if done.any():
            self.actions = self.actions.copy()
            self.actions[done] = self.act(collector.obs[done])
        self.t = np.where(done, 0, self.t + 1)
        return {"actor_objective": float(objective.data), "critic_loss": float(loss.data),
                "td_error_abs": float(np.mean(np.abs(q_target - q_sa)))}

