"""Learning evidence for MADDPG (issue 20): MADDPG against independent DDPG, and ensembles.

Every run is exactly ``minipg train maddpg --env TASK --seed S --total-steps STEPS
--set n_envs=4 --set train_freq=25 --set relaxed_actions=R --set critic=CRITIC
[--set ensemble_size=K]`` (R: true for the variants named ``*-relaxed``, false -- the
argmax path, which the earlier tables ran -- otherwise)
on the task's preset (the paper's settings: Adam 0.01, batch 1024, gamma 0.95,
tau 0.01, 64-64 ReLU, episodes of 25 steps, updates once the replay holds
25,600 transitions).  ``n_envs=4`` with ``train_freq=25`` vector steps keeps
the paper's one update per 100 environment steps (four copies of the task are
stepped together so the actors run on four observations per call).  One BLAS
thread, one run at a time, ``nice -n 10``.

After training, each run is evaluated here on 200 episodes (seed 10000) of
its deterministic policies (argmax of the logits) with the paper's measures:

* cooperative communication (``simple_speaker_listener_v4``): the listener's
  distance to the goal landmark at the episode's last step, and the success
  rate: the fraction of episodes ending with that distance below 0.1 (the
  listener, radius 0.075, overlapping the landmark, radius 0.04); the reach
  rate: the fraction of episodes in which that distance falls below 0.1 at
  some step (the paper's "target reach" is not defined precisely enough to
  say which of the two it is; ``reevaluate`` adds it to older rows);
* cooperative navigation (``simple_spread_v3``, N = 3): the sum over the
  landmarks of the nearest agent's distance, averaged over the steps of an
  episode, and the number of agent-agent collisions per episode (pairs in
  contact at a step, summed over the steps);
* competitive (``simple_adversary_v3``, physical deception): runs with and
  without policy ensembles (K = 3 and K = 1), and every cross-play pairing
  (the good agents of one run against the adversary of another), each agent
  running a uniformly drawn sub-policy per episode; reported: the good agents'
  and the adversary's mean episode return.

What results/maddpg_learning.md reports (``--set`` goes after the defaults, so
``train_freq=10``, one update per 40 environment steps, and ``learning_starts=5000``
replace the paper's rate and warm-up to fit a small CPU budget):

    S="--set learning_starts=5000 train_freq=10"
    nice -n 10 python verification/maddpg_learning.py run --part speaker --steps 100000 $S
    nice -n 10 python verification/maddpg_learning.py run --part spread --steps 50000 $S
    nice -n 10 python verification/maddpg_learning.py run --part adversary --steps 50000 \
        --seeds 0 $S                  # K = 1 and K = 3, then the cross-play rows
    nice -n 10 python verification/maddpg_learning.py run --part speaker --steps 300000 \
        --seeds 0 --out runs/maddpg_learning_long $S
    python verification/maddpg_learning.py cross --part adversary --steps 50000 --seeds 0
    python verification/maddpg_learning.py report [--out DIR]   # the tables

The paper's protocol with the authors' action path (variants ``maddpg-relaxed`` and
``ddpg-relaxed`` add ``relaxed_actions=true``: the task receives the Gumbel-softmax
relaxed sample itself), no departures: 25,000 episodes of 25 steps, one update per 100
environment steps, updates from 25,600 transitions (the preset's values):

    nice -n 10 python verification/maddpg_learning.py run --part speaker --steps 200000 \
        --seeds 0 --variants maddpg-relaxed ddpg-relaxed maddpg --out runs/maddpg_pilot
    nice -n 10 python verification/maddpg_learning.py run --part speaker --steps 625000 \
        --variants maddpg-relaxed ddpg-relaxed --out runs/maddpg_paper
    nice -n 10 python verification/maddpg_learning.py run --part spread --steps 150000 \
        --variants maddpg-relaxed ddpg-relaxed --out runs/maddpg_paper_spread
    nice -n 12 python verification/maddpg_learning.py run --part spread --steps 625000 \
        --seeds S --variants maddpg-relaxed ddpg-relaxed --out runs/maddpg_paper_spread625
                                      # S = 0, 1, 2 (one process each)
    nice -n 10 python verification/maddpg_learning.py run --part adversary --steps 150000 \
        --seeds S --variants K1-relaxed K3-relaxed --out runs/maddpg_paper_adversary
                                      # S = 0, 1, 2 (one process each); then cross-play rows

For cooperative communication the script also evaluates the exploring policies
(columns ``*_stochastic``: relaxed Gumbel-softmax samples), which is what the authors'
code runs when it measures its agents.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from minipg.run import load_run  # noqa: E402

TASKS = {"speaker": "mpe2/simple_speaker_listener_v4", "spread": "mpe2/simple_spread_v3",
         "adversary": "mpe2/simple_adversary_v3"}
EVAL_EPISODES = 200
EVAL_SEED = 10_000


def run_dir(out, part, variant, seed):
    return Path(out) / f"{part}-{variant}-{seed}"


def train(out, part, variant, seed, steps, extra=()):
    """One run through the command line; returns its CPU seconds and the command."""
    settings = ["n_envs=4", "train_freq=25", *extra]
    base, _, relaxed = variant.partition("-")   # maddpg-relaxed: relaxed_actions=true
    settings.append(f"relaxed_actions={'true' if relaxed else 'false'}")   # else: argmax path
    if base in ("maddpg", "ddpg"):
        settings.append(f"critic={'centralized' if base == 'maddpg' else 'independent'}")
    else:                                        # ensemble K<k> or K<k>-relaxed
        settings.append(f"ensemble_size={base[1:]}")
    cmd = [sys.executable, "-m", "minipg", "train", "maddpg", "--env", TASKS[part], "--seed",
           str(seed), "--total-steps", str(steps), "--out", str(run_dir(out, part, variant, seed)),
           "--force", "--threads", "1"]
    for s in settings:
        cmd += ["--set", s]
    start = os.times()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   env=dict(os.environ, PYTHONPATH=str(ROOT)))
    end = os.times()
    return (end.children_user - start.children_user) + (end.children_system
                                                         - start.children_system), cmd


def episodes(part, agents, on_step, deterministic=True):
    """EVAL_EPISODES episodes of the deterministic policies (argmax of the logits; with
    relaxed_actions the noise-free softmax(l / T)) or, ``deterministic=False``, of the
    exploring ones (relaxed Gumbel-softmax samples: what the authors' code runs when it
    evaluates); agent j acts with
    ``agents[j]`` (an algorithm instance), its sub-policy drawn uniformly per episode.
    ``on_step(world, step, ended)`` after every step; returns the per-agent returns
    (episodes, N)."""
    first = agents[0]
    collector = type(first).make_collector(TASKS[part], first.config, EVAL_SEED, n_envs=1)
    rng = np.random.default_rng(EVAL_SEED)
    world = collector.envs[0].unwrapped.world
    draw = lambda: np.array([[rng.integers(a.K) for a in agents]])   # noqa: E731
    sub, returns, current = draw(), [], 0.0
    try:
        while collector.episodes < EVAL_EPISODES:
            # agent j's action from its own run, with its own drawn sub-policy (column j)
            actions = [a.act(collector.obs, deterministic=deterministic,
                             subpolicy=np.where(np.arange(len(agents)) == j, sub, 0))[j]
                       for j, a in enumerate(agents)]
            before = collector.episodes
            step = collector.step(actions)
            current = current + step.rewards[0]
            ended = collector.episodes > before
            on_step(world, step, ended)
            if ended:
                returns.append(current)
                current, sub = 0.0, draw()
    finally:
        collector.close()
    return np.asarray(returns)


def listener_goal_distance(step):
    """The listener's distance to the goal after ``step`` (at an episode's last step, from
    the true final observations): the listener's holds the 3 landmarks relative to it (entries 2..7), the
    speaker's the goal's colour (0.65 in the goal's entry, 0.15 elsewhere)."""
    speaker_obs, listener_obs = step.next_obs[0][0], step.next_obs[1][0]
    goal = int(np.argmax(speaker_obs))
    rel = listener_obs[2:8].reshape(3, 2)
    return float(np.linalg.norm(rel[goal]))


def spread_measure(world):
    """(sum over landmarks of the nearest agent's distance, agent pairs in contact)."""
    agents, landmarks = world.agents, world.landmarks
    dist = sum(min(np.linalg.norm(a.state.p_pos - lm.state.p_pos) for a in agents)
               for lm in landmarks)
    collisions = 0
    for x in range(len(agents)):
        for y in range(x + 1, len(agents)):
            gap = np.linalg.norm(agents[x].state.p_pos - agents[y].state.p_pos)
            collisions += gap < agents[x].size + agents[y].size
    return dist, collisions


def evaluate(part, dirs):
    """The paper's measures of one run, or (adversary, two dirs) of the good agents of
    dirs[0] against the adversary of dirs[1]."""
    loaded = [load_run(str(d))[0] for d in dirs]
    n_agents = loaded[0].n_agents
    agents = [loaded[0]] * n_agents
    if len(loaded) == 2:                  # simple_adversary: agent 0 is the adversary
        agents = [loaded[1]] + [loaded[0]] * (n_agents - 1)
    if part == "speaker":
        out = {}
        for deterministic, suffix in ((True, ""), (False, "_stochastic")):
            finals, closest, nearest = [], [], [np.inf]

            def on_step(world, step, ended):
                distance = listener_goal_distance(step)
                nearest[0] = min(nearest[0], distance)
                if ended:
                    finals.append(distance)
                    closest.append(nearest[0])
                    nearest[0] = np.inf
            returns = episodes(part, agents, on_step, deterministic)
            out.update({f"final_distance{suffix}": float(np.mean(finals)),
                        f"success_rate{suffix}": float(np.mean(np.asarray(finals) < 0.1)),
                        f"reach_rate{suffix}": float(np.mean(np.asarray(closest) < 0.1)),
                        f"return_mean{suffix}": float(np.mean(returns.sum(axis=1)))})
        return out
    if part == "spread":
        per_step = []
        returns = episodes(part, agents, lambda w, step, ended: per_step.append(
            spread_measure(w)) if not ended else per_step.append(None))
        # an ending step's world is already reset: its measure is left out (24 of 25 steps)
        kept = np.asarray([m for m in per_step if m is not None])
        return {"mean_distance": float(kept[:, 0].mean()),
                "collisions": float(kept[:, 1].sum() / EVAL_EPISODES),
                "return_mean": float(np.mean(returns.sum(axis=1)))}
    returns = episodes(part, agents, lambda w, step, ended: None)
    return {"adversary_return": float(returns[:, 0].mean()),
            "good_return": float(returns[:, 1:].mean())}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("command", choices=("run", "cross", "report", "reevaluate"))
    p.add_argument("--part", choices=tuple(TASKS), default="speaker")
    p.add_argument("--steps", type=int, default=150_000,
                   help="training steps (cross: the steps the runs had, for the rows)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--variants", nargs="+", default=None)
    p.add_argument("--set", nargs="*", default=[], dest="settings",
                   help="more settings for every run (key=value), after the defaults")
    p.add_argument("--out", default=str(ROOT / "runs" / "maddpg_learning"))
    args = p.parse_args(argv)
    variants = args.variants or (["K1", "K3"] if args.part == "adversary"
                                 else ["maddpg", "ddpg"])
    log = Path(args.out) / "results.jsonl"
    if args.command in ("run", "cross"):
        Path(args.out).mkdir(parents=True, exist_ok=True)
        for seed in args.seeds:
            for variant in variants if args.command == "run" else ():
                cpu, cmd = train(args.out, args.part, variant, seed, args.steps, args.settings)
                metrics = evaluate(args.part, [run_dir(args.out, args.part, variant, seed)])
                row = dict(part=args.part, variant=variant, seed=seed, steps=args.steps,
                           cpu_s=round(cpu, 1), cmd=" ".join(cmd[1:]), **metrics)
                print(json.dumps(row), flush=True)
                with open(log, "a") as fh:
                    fh.write(json.dumps(row) + "\n")
            if args.part == "adversary" and len(variants) == 2:
                for good, adv in ((variants[0], variants[1]), (variants[1], variants[0])):
                    metrics = evaluate("adversary", [run_dir(args.out, "adversary", good, seed),
                                                     run_dir(args.out, "adversary", adv, seed)])
                    row = dict(part="adversary-cross", variant=f"good {good} vs adv {adv}",
                               seed=seed, steps=args.steps, **metrics)
                    print(json.dumps(row), flush=True)
                    with open(log, "a") as fh:
                        fh.write(json.dumps(row) + "\n")
        return 0
    rows = [json.loads(line) for line in open(log)]
    if args.command == "reevaluate":          # today's measures for the rows' runs, in place
        for row in rows:
            if row["part"] in ("speaker", "spread"):
                row.update(evaluate(row["part"], [run_dir(args.out, row["part"],
                                                          row["variant"], row["seed"])]))
        with open(log, "w") as fh:
            fh.writelines(json.dumps(row) + "\n" for row in rows)
    print(report(rows))
    return 0


METRICS = {"speaker": ("success_rate", "reach_rate", "final_distance", "return_mean",
                       "success_rate_stochastic", "reach_rate_stochastic",
                       "final_distance_stochastic", "return_mean_stochastic"),
           "spread": ("mean_distance", "collisions", "return_mean"),
           "adversary": ("good_return", "adversary_return"),
           "adversary-cross": ("good_return", "adversary_return")}


def report(rows):
    """Markdown tables: per task and variant, every seed and the mean +- std over seeds."""
    lines = []
    for part, metrics in METRICS.items():
        mine = [r for r in rows if r["part"] == part]
        if not mine:
            continue
        metrics = [m for m in metrics if all(m in r for r in mine)]   # older rows: fewer
        lines += [f"### {part}", "", "| variant | seed | steps | CPU s | "
                  + " | ".join(metrics) + " |", "|" + " --- |" * (4 + len(metrics))]
        for r in mine:
            lines.append(f"| {r['variant']} | {r['seed']} | {r['steps']} | "
                         f"{r.get('cpu_s', '-')} | "
                         + " | ".join(f"{r[m]:.3f}" for m in metrics) + " |")
        for variant in dict.fromkeys(r["variant"] for r in mine):
            vals = [r for r in mine if r["variant"] == variant]
            lines.append(f"| **{variant}, mean +- std** | {len(vals)} seeds | | | " + " | ".join(
                f"{np.mean([r[m] for r in vals]):.3f} +- {np.std([r[m] for r in vals]):.3f}"
                for m in metrics) + " |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
