"""Small gymnasium tasks with faulty or unsupported spaces, for tests/test_run_faults.py.

Importing this module registers them; on the command line they are reached
with gymnasium's ``module:EnvId`` form, e.g. ``--env run_fault_envs:NaNReward-v0``
with this directory on PYTHONPATH.
"""

import gymnasium as gym
import numpy as np


class Toy(gym.Env):
    """A 10-step task; ``nan_at`` makes the reward of that step (counted over the
    instance's life) NaN."""

    metadata = {"render_modes": ["rgb_array"]}

    def __init__(self, observation_space=None, action_space=None, nan_at=None,
                 render_mode=None):
        self.render_mode = render_mode
        self.observation_space = observation_space or gym.spaces.Box(-1.0, 1.0, (2,))
        self.action_space = action_space or gym.spaces.Discrete(2)
        self.nan_at = nan_at
        self.t = 0
        self.total = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self.observation_space.sample(), {}

    def step(self, action):
        self.t += 1
        self.total += 1
        reward = float("nan") if self.total == self.nan_at else 1.0
        return self.observation_space.sample(), reward, False, self.t >= 10, {}

    def render(self):
        return None                         # a task that draws nothing


def _register(name, **kwargs):
    if name not in gym.registry:
        gym.register(name, entry_point=lambda **kw: Toy(**kwargs, **kw))


_register("NaNReward-v0", nan_at=700)
_register("DictObs-v0", observation_space=gym.spaces.Dict(
    {"a": gym.spaces.Box(-1.0, 1.0, (2,)), "b": gym.spaces.Discrete(3)}))
_register("TupleObs-v0", observation_space=gym.spaces.Tuple(
    (gym.spaces.Discrete(3), gym.spaces.Discrete(2))))
_register("ImageObs-v0", observation_space=gym.spaces.Box(0, 255, (16, 16, 3), np.uint8))
_register("MultiDiscreteActions-v0", action_space=gym.spaces.MultiDiscrete([2, 3]))
_register("UnboundedActions-v0", action_space=gym.spaces.Box(-np.inf, np.inf, (1,)))
_register("NoFrames-v0")                 # render() returns None
if "NoRenderMode-v0" not in gym.registry:  # gym.make(..., render_mode=...) is a TypeError
    gym.register("NoRenderMode-v0", entry_point=lambda: Toy())


class NoRenderModes(Toy):
    metadata = {"render_modes": []}


if "NoRenderModes-v0" not in gym.registry:  # says it has no render mode
    gym.register("NoRenderModes-v0", entry_point=NoRenderModes)
