"""Environments: gymnasium glue and the exact-gradient test beds (tabular MDP, LQR).

Registered with gymnasium on import, so ``minipg train ALGO --env ID`` runs them
like any task:

* ``minipg/ShortCorridor-v0``: Sutton & Barto's short corridor (Example 13.1),
  episodic, gamma = 1, one-hot observations, cut at 1000 steps;
* ``minipg/RandomMDP-v0``: ``random_mdp(6, 3, seed=0, gamma=0.9)``, continuing,
  one-hot observations, cut at 200 steps;
* ``minipg/LQR2D-v0``: ``lqr_2d()`` (a discretized double integrator,
  gamma = 0.95), reward = -cost, cut at 200 steps.
"""

import gymnasium as gym

from .lqr import LQR, LQREnv, lqr_2d, random_lqr
from .tabular import TabularMDP, TabularMDPEnv, random_mdp, short_corridor, two_state_mdp

__all__ = ["TabularMDP", "TabularMDPEnv", "random_mdp", "short_corridor", "two_state_mdp",
           "LQR", "LQREnv", "random_lqr", "lqr_2d"]

_ENVS = {
    "minipg/ShortCorridor-v0": lambda **kw: TabularMDPEnv(short_corridor(), max_episode_steps=1000),
    "minipg/RandomMDP-v0": lambda **kw: TabularMDPEnv(random_mdp(6, 3, seed=0, gamma=0.9),
                                                      max_episode_steps=200),
    "minipg/LQR2D-v0": lambda **kw: LQREnv(lqr_2d(), horizon=200),
}
for _id, _make in _ENVS.items():
    if _id not in gym.registry:
        gym.register(_id, entry_point=_make)
