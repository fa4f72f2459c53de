"""Learning evidence for issue 3: REINFORCE (with baseline) and actor-critic on CartPole-v1.

Trains each algorithm with its CartPole-v1 preset for 3 seeds through the
same `minipg train` run loop users call, and records the final deterministic
evaluation (10 episodes) and the first logged step at which the rolling
training return (mean of the last 20 episodes) reached 475.

    python verification/classical_learning.py [--steps-reinforce 300000]
        [--steps-ac 300000] [--seeds 0 1 2] [--out runs/verification]

Writes verification/results/classical_learning.md.
"""

import argparse
import io
import json
import os
import statistics
import time

import learning_runs as lr
from minipg.run import train


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps-reinforce", type=int, default=300_000)
    p.add_argument("--steps-ac", type=int, default=300_000)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--out", default="runs/verification")
    args = p.parse_args()
    rows = []
    for algo, steps in (("reinforce", args.steps_reinforce), ("actor_critic", args.steps_ac)):
        for seed in args.seeds:
            out = os.path.join(args.out, f"{algo}-CartPole-v1-{seed}")
            start = time.perf_counter()
            train(algo, "CartPole-v1", total_steps=steps, seed=seed, out=out, force=True,
                  stream=io.StringIO())
            wall = time.perf_counter() - start
            ev = json.load(open(os.path.join(out, "eval.json")))
            reached = lr.first_step_reaching(lr.read_progress(out), 475.0)
            rows.append((algo, seed, steps, ev["return_mean"], reached, wall))
            print(rows[-1], flush=True)
    lines = ["# Classical estimators: learning on CartPole-v1", "",
             "Command: `python verification/classical_learning.py` (presets, no flags; "
             f"seeds {args.seeds}). Final evaluation: deterministic policy, 10 episodes. "
             "'reached 475' is the first logged step (rows every 2000 steps) at which the mean "
             "training return of the last 20 episodes was >= 475.", "",
             *lr.table_head("algorithm", "seed", "steps", "final eval return",
                            "reached 475 at step", "wall s")]
    for algo, seed, steps, ret, reached, wall in rows:
        lines.append(f"| {algo} | {seed} | {steps} | {ret:.1f} | {reached or 'never'} | "
                     f"{wall:.0f} |")
    lines.append("")
    for algo in ("reinforce", "actor_critic"):
        finals = [r[3] for r in rows if r[0] == algo]
        reached = [r[4] for r in rows if r[0] == algo and r[4] is not None]
        lines.append(f"- {algo}: median final eval return {statistics.median(finals):.1f}; "
                     f"median step reaching 475: "
                     f"{statistics.median(reached) if len(reached) == len(finals) else 'n/a'}")
    lr.write_report(lines, lr.results_path("classical_learning.md"))


if __name__ == "__main__":
    main()
