"""Learning evidence for issue 3: Off-PAC (tabular MDP) and DPG (COPDAC-Q, LQR), scored exactly.

Both algorithms train through the same `minipg train` run loop users call,
on the exact test beds, so the learned policy is scored by a linear solve
instead of sampled returns:

* off_policy_ac on minipg/RandomMDP-v0 (random_mdp(6, 3, seed=0, gamma=0.9)):
  the target policy pi_u (the linear softmax itself, and its greedy action)
  scored by TabularMDP.expected_return against optimal_return(), while acting
  by a FIXED behaviour policy beta: uniform (the default), and a mixture that
  puts 70% + 10% on the WORST action of every state (epsilon = 0.3 uniform
  mixed with a given policy);
* dpg on minipg/LQR2D-v0 (lqr_2d(), gamma = 0.95): the gain K scored by
  LQR.cost(K) (Lyapunov) against LQR.cost(optimal_gain()) (Riccati), for the
  off-policy Q-learning critic (the default) and the on-policy Sarsa critic.

The gap reported is (J* - J) / |J*| (for the LQR, J = -C, so it is
C(K) / C(K*) - 1).  Each run is trained in segments (`--resume`, which
continues exactly), and the exact gap is measured after every segment, so
the table shows the first measured step within 1% and whether the run stayed
within 1% at every later measurement.  3 seeds each.

    python verification/classical_control.py [--seeds 0 1 2]
        [--offpac-steps 30000] [--offpac-every 2500]
        [--dpg-steps 200000] [--dpg-every 10000] [--only NAME ...]
        [--out runs/verification/classical_control] [--reuse]

Writes verification/results/classical_control.md.
"""

import argparse
import contextlib
import io
import json
import os
import sys
import time

import gymnasium as gym
import numpy as np

import minipg.algorithms.off_policy_ac as offpac_module
import minipg.envs  # noqa: F401  (registers the minipg/ tasks)
from minipg.run import load_run, train

HERE = os.path.dirname(os.path.abspath(__file__))
MDP_ID, LQR_ID = "minipg/RandomMDP-v0", "minipg/LQR2D-v0"


# --- exact scores ----------------------------------------------------------------------
def offpac_score(agent):
    """Exact gaps of the target softmax policy and of its greedy policy."""
    mdp = gym.make(MDP_ID).unwrapped.mdp
    j_star = mdp.optimal_return()
    pi = agent.policy_matrix(np.eye(mdp.n_states))
    greedy = np.eye(mdp.n_actions)[np.argmax(pi, axis=1)]
    j, j_greedy = mdp.expected_return(pi), mdp.expected_return(greedy)
    return {"J": j, "J*": j_star, "gap": (j_star - j) / abs(j_star),
            "gap_greedy": (j_star - j_greedy) / abs(j_star)}


def dpg_score(agent):
    """Exact C(K) / C(K*) - 1 of the learned gain (inf when K does not stabilise)."""
    lqr = gym.make(LQR_ID).unwrapped.lqr
    gain = np.array(agent.policy.K.data, dtype=np.float64)
    c_star = lqr.cost(lqr.optimal_gain())
    c = lqr.cost(gain) if lqr.is_stable(gain) else float("inf")
    return {"J": -c, "J*": -c_star, "gap": c / c_star - 1.0, "K": gain.ravel().tolist()}


def worst_action_logits(path):
    """A given fixed policy for the mixture beta: logits 10 on argmin_a Q*(s, a), 0 elsewhere
    (softmax puts 0.99991 on the worst action), saved as (obs_dim, n_actions) = (6, 3)."""
    mdp = gym.make(MDP_ID).unwrapped.mdp
    _, q_star = mdp.optimal_values()
    logits = 10.0 * np.eye(mdp.n_actions)[np.argmin(q_star, axis=1)]
    np.save(path, logits)
    return path


# --- one run, trained in segments --------------------------------------------------------
def trained_in_segments(algo, env_id, seed, total, every, out, overrides, score):
    """Train to ``total`` steps, pausing every ``every`` steps to score the policy exactly."""
    curve = []
    start = time.perf_counter()
    for end in range(every, total + every, every):
        end = min(end, total)
        if end == every:
            train(algo, env_id, total_steps=end, seed=seed, out=out, force=True,
                  overrides=overrides, stream=io.StringIO())
        else:
            train(algo, total_steps=end, out=out, resume=True, stream=io.StringIO())
        agent, _ = load_run(out)
        curve.append((end, score(agent)))
        if end == total:
            break
    wall = time.perf_counter() - start
    gaps = [(step, s["gap"]) for step, s in curve]
    first = next((step for step, g in gaps if g <= 0.01), None)
    stayed = first is not None and all(g <= 0.01 for step, g in gaps if step >= first)
    return {"curve": curve, "final": curve[-1][1], "first_within_1pct": first,
            "stayed_within_1pct": stayed, "wall_s": wall, "steps": total}


@contextlib.contextmanager
def without_importance_ratio():
    """ABLATION: rho := 1 in Off-PAC's critic and actor traces (a deliberately wrong update:
    the critic then evaluates beta, and the actor follows beta's advantages)."""
    real = offpac_module.importance_weights
    offpac_module.importance_weights = lambda **kwargs: 1.0
    try:
        yield
    finally:
        offpac_module.importance_weights = real


def mixture_settings(d):
    return {"behaviour": "mixture", "behaviour_epsilon": 0.3, "lam": 0.0, "alpha_u": 0.01,
            "behaviour_logits": worst_action_logits(os.path.join(d, "beta.npy"))}


VARIANTS = {
    # name: (algorithm, task, description, overrides(args, out_dir), score, steps, every)
    # and, optionally, a context manager the run trains under (the ablation)
    "offpac-uniform": ("off_policy_ac", MDP_ID, "Off-PAC, beta uniform (default settings)",
                       lambda a, d: {}, offpac_score, "offpac_steps", "offpac_every"),
    "offpac-worst-mixture": (
        "off_policy_ac", MDP_ID,
        "Off-PAC, beta = 0.3 uniform + 0.7 worst-action policy; lambda = 0, alpha_u = 0.01. "
        "rho reaches 1/0.1 = 10 here; in trial runs of the same update with lambda = 0.4 "
        "(alpha_u = 0.05 or 0.01) the target policy collapsed onto a poor deterministic one "
        "in 4 of 5 runs (gap stuck at 8-100%)",
        lambda a, d: mixture_settings(d), offpac_score, "mixture_steps", "offpac_every"),
    "offpac-worst-mixture-no-rho": (
        "off_policy_ac", MDP_ID,
        "ABLATION, the same run with rho := 1 in both traces (importance ratio removed): "
        "shows that the ratio is what makes the target policy optimal",
        lambda a, d: mixture_settings(d), offpac_score, "mixture_steps", "offpac_every",
        without_importance_ratio),
    "dpg-q_learning": ("dpg", LQR_ID, "COPDAC-Q, Q-learning critic (off-policy, default)",
                       lambda a, d: {}, dpg_score, "dpg_steps", "dpg_every"),
    "dpg-sarsa": ("dpg", LQR_ID, "COPDAC, Sarsa critic (on-policy, noisy actions)",
                  lambda a, d: {"critic": "sarsa"}, dpg_score, "dpg_steps", "dpg_every"),
}


def pct(x):
    return "unstable" if not np.isfinite(x) else f"{100 * x:.3f}%"


def report(results, args, command):
    lines = [
        "# Off-PAC and DPG (COPDAC-Q): learning measured by exact returns", "",
        f"Command: `{command}` (seeds {args.seeds}); each run trains through `minipg train`'s "
        "run loop and is scored after every segment by the exact test bed "
        "(`TabularMDP.expected_return` of the target policy matrix; `LQR.cost` of the gain). "
        "gap = (J* - J) / |J*|; for the LQR J = -C, so gap = C(K)/C(K*) - 1. "
        "'first <= 1%' is the first scored step within 1% of the optimum; 'stayed' says "
        "whether every later score was too. Wall times are on the shared 2-core machine "
        "(several other jobs running), for scale only.", "",
        "| variant | seed | steps | final gap | first <= 1% | stayed | final J | J* | wall s |",
        "|---|---|---|---|---|---|---|---|---|"]
    for (name, seed), r in results.items():
        f = r["final"]
        stayed = "yes" if r["stayed_within_1pct"] else "no"
        lines.append(f"| {name} | {seed} | {r['steps']} | {pct(f['gap'])} | "
                     f"{r['first_within_1pct'] or 'never'} | {stayed} "
                     f"| {f['J']:.4f} | {f['J*']:.4f} | {r['wall_s']:.0f} |")
    lines += ["", "Greedy target policies (Off-PAC; the evaluation's deterministic action) and "
              "learned gains (DPG) at the end:", ""]
    for (name, seed), r in results.items():
        f = r["final"]
        if "gap_greedy" in f:
            lines.append(f"- {name} seed {seed}: greedy policy's gap {pct(f['gap_greedy'])}")
        else:
            lines.append(f"- {name} seed {seed}: K = {np.round(f['K'], 4).tolist()}")
    lines += ["", "Gap after each segment (step: gap):", ""]
    for (name, seed), r in results.items():
        curve = ", ".join(f"{step}: {pct(s['gap'])}" for step, s in r["curve"])
        lines.append(f"- {name} seed {seed}: {curve}")
    lines += ["", "Descriptions:", ""]
    for name in dict.fromkeys(n for n, _ in results):
        lines.append(f"- {name}: {VARIANTS[name][2]}")
    return "\n".join(lines) + "\n"


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--offpac-steps", type=int, default=30_000)
    p.add_argument("--mixture-steps", type=int, default=150_000)
    p.add_argument("--offpac-every", type=int, default=2_500)
    p.add_argument("--dpg-steps", type=int, default=200_000)
    p.add_argument("--dpg-every", type=int, default=10_000)
    p.add_argument("--only", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    p.add_argument("--out", default="runs/verification/classical_control")
    p.add_argument("--reuse", action="store_true",
                   help="reuse a finished run in --out when its settings are the same")
    p.add_argument("--results", default=os.path.join(HERE, "results", "classical_control.md"))
    args = p.parse_args()
    command = "python verification/classical_control.py " + " ".join(sys.argv[1:])
    results = {}
    for name in args.only:
        algo, env_id, _, overrides, score, steps_arg, every_arg, *context = VARIANTS[name]
        context = context[0] if context else contextlib.nullcontext
        for seed in args.seeds:
            out = os.path.join(args.out, f"{name}-{seed}")
            os.makedirs(out, exist_ok=True)
            settings = {"steps": getattr(args, steps_arg), "every": getattr(args, every_arg),
                        "overrides": overrides(args, out)}
            saved = os.path.join(out, "exact_result.json")
            r = None
            if args.reuse and os.path.exists(saved):
                previous = json.load(open(saved))
                if previous["settings"] == settings:
                    r = previous["result"]
            if r is None:
                with context():
                    r = trained_in_segments(algo, env_id, seed, settings["steps"],
                                            settings["every"], out, settings["overrides"], score)
                with open(saved, "w") as fh:
                    json.dump({"settings": settings, "result": r}, fh, indent=1)
            results[(name, seed)] = r
            print(f"{name} seed {seed}: final gap {pct(r['final']['gap'])}, first <= 1% at "
                  f"{r['first_within_1pct']}, stayed {r['stayed_within_1pct']}, "
                  f"{r['wall_s']:.0f} s", flush=True)
    os.makedirs(os.path.dirname(args.results), exist_ok=True)
    with open(args.results, "w") as fh:
        fh.write(report(results, args, command.strip()))
    print(f"wrote {args.results}")


if __name__ == "__main__":
    main()
