"""Whole processes as a user runs them: minipg's default command against stable-baselines3.

What ``ppo_speed.py default`` and ``offpolicy_speed.py default`` share (issue 13):

* :func:`user_env` -- the environment a user's shell gives: this one without any
  BLAS / OpenMP thread variable (OPENBLAS_NUM_THREADS, OMP_NUM_THREADS,
  MKL_NUM_THREADS, ...), so every library picks its own default;
* :func:`time_process` -- run one command, return its wall time and the CPU
  time (user + system) of that process and its children (``os.wait4``);
* :func:`alternate` -- the contenders' commands run one after another, repeat
  by repeat (the order reversed on odd repeats), so drift in the machine's load
  falls on all of them alike;
* ``sb3`` (this file run as a script) -- stable-baselines3 with the zoo's
  hyperparameters for the task (the same as minipg's presets) and otherwise its
  own defaults: torch's default thread count, float32; it trains, then evaluates
  10 deterministic episodes, as ``minipg train`` does.

    python verification/whole_process.py sb3 ppo CartPole-v1 --seed 0
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
               "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "GOTO_NUM_THREADS")


def user_env():
    """os.environ without thread variables (PYTHONPATH kept: it selects the tree)."""
    return {k: v for k, v in os.environ.items() if k not in THREAD_VARS}


def time_process(cmd, env=None, cwd=None):
    """Run ``cmd``; {"wall_s", "cpu_s", "user_s", "sys_s", "rc", "tail"} of that process
    (CPU time: the process and its waited-for children, from wait4's rusage)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    return {"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime, "user_s": usage.ru_utime,
            "sys_s": usage.ru_stime, "rc": proc.returncode, "tail": out[-1500:]}


def alternate(contenders, repeats, log=print):
    """{name: [result, ...]}: each contender's command (a function of the repeat index
    giving (cmd, env)) once per repeat, in order on even repeats and reversed on odd.
    Each result is also logged as a ``RUN {json}`` line, so a session cut short keeps
    the runs that finished."""
    results = {name: [] for name in contenders}
    names = list(contenders)
    for r in range(repeats):
        for name in (names if r % 2 == 0 else names[::-1]):
            cmd, env = contenders[name](r)
            res = time_process(cmd, env)
            res["load_avg"] = os.getloadavg()[0]
            results[name].append(res)
            log(f"repeat {r} {name}: wall {res['wall_s']:.1f} s, CPU {res['cpu_s']:.1f} s, "
                f"rc {res['rc']}, load {res['load_avg']:.1f}")
            log("RUN " + json.dumps({"repeat": r, "name": name, "cmd": cmd, **res}))
            if res["rc"] != 0:
                log(res["tail"])
    return results


def summary(values):
    """'median [min, max]' of a list of numbers."""
    return f"{statistics.median(values):.2f} [{min(values):.2f}, {max(values):.2f}]"


def minipg_command(algo, env_id, seed, out, *extra):
    """``python -m minipg train ALGO --env ENV --seed S --out OUT --force`` (the preset's
    steps, the default threads and dtype unless ``extra`` says otherwise)."""
    return [sys.executable, "-m", "minipg", "train", algo, "--env", env_id, "--seed", str(seed),
            "--out", out, "--force", *extra]


def sb3_command(algo, env_id, seed):
    return [sys.executable, os.path.abspath(__file__), "sb3", algo, env_id, "--seed", str(seed)]


def loop_seconds(result, out=None):
    """The training loop's own seconds: minipg's progress.csv last wall_s (``out``), or
    the ``learn`` time SB3's run printed."""
    if out is not None:
        import csv
        with open(os.path.join(out, "progress.csv"), newline="") as fh:
            return float(list(csv.DictReader(fh))[-1]["wall_s"])
    for line in result["tail"].splitlines():
        if line.startswith("RESULT "):
            return float(line.split("learn_s ")[1].split(";")[0])
    return float("nan")


def write_section(path, heading, text):
    """Put ``## heading`` + ``text`` into the Markdown file at ``path``: replacing the
    section of that heading if there is one, else right after the title line."""
    old = open(path).read() if os.path.exists(path) else "# " + heading + "\n"
    lines = old.split("\n")
    marker = "## " + heading
    block = [marker, "", *text.rstrip("\n").split("\n"), ""]
    if marker in lines:
        start = lines.index(marker)
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")),
                   len(lines))
        lines[start:end] = block
    else:
        lines[2:2] = block
    with open(path, "w") as fh:
        fh.write("\n".join(lines))


# ------------------------------------------------------------ stable-baselines3, one run
def sb3_run(algo, env_id, seed, steps):
    """SB3 with the zoo's hyperparameters for ``env_id`` (minipg's presets), its own
    defaults otherwise; train ``steps``, evaluate 10 deterministic episodes."""
    import gymnasium as gym
    import numpy as np
    from stable_baselines3 import PPO, SAC, TD3
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.evaluation import evaluate_policy
    from stable_baselines3.common.noise import NormalActionNoise

    def linear(initial):
        return lambda progress_remaining: progress_remaining * initial   # the zoo's lin_

    if algo == "ppo":
        env = make_vec_env(env_id, n_envs=8, seed=seed)
        model = PPO("MlpPolicy", env, n_steps=32, batch_size=256, n_epochs=20, gamma=0.98,
                    gae_lambda=0.8, learning_rate=linear(1e-3), clip_range=linear(0.2),
                    ent_coef=0.0, seed=seed, device="cpu")
    elif algo == "sac":
        model = SAC("MlpPolicy", gym.make(env_id), learning_rate=1e-3, seed=seed, device="cpu")
    elif algo == "td3":
        model = TD3("MlpPolicy", gym.make(env_id), learning_rate=1e-3, gamma=0.98,
                    buffer_size=200_000, learning_starts=10_000,
                    action_noise=NormalActionNoise(np.zeros(1), 0.1 * np.ones(1)),
                    policy_kwargs=dict(net_arch=[400, 300]), seed=seed, device="cpu")
    else:
        raise SystemExit(f"unknown algorithm {algo}")
    start = time.perf_counter()
    model.learn(steps)
    learn_s = time.perf_counter() - start
    eval_env = gym.make(env_id)
    eval_env.reset(seed=seed + 10_000)
    mean, std = evaluate_policy(model, eval_env, n_eval_episodes=10, deterministic=True)
    import torch
    print(f"RESULT learn_s {learn_s:.3f}; return {mean:.1f} +- {std:.1f}; torch threads "
          f"{torch.get_num_threads()}")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("command", choices=("sb3",))
    p.add_argument("algo")
    p.add_argument("env_id")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=None)
    args = p.parse_args()
    steps = args.steps or {"ppo": 100_000, "sac": 20_000, "td3": 20_000}[args.algo]
    sb3_run(args.algo, args.env_id, args.seed, steps)


if __name__ == "__main__":
    sys.exit(main())
