"""Issue 18, fourth stage: ACER's CartPole-v1 preset tuned again, then one confirmation
against A2C's preset on fresh seeds, decided by a test stated before its runs.

The third stage and its two wider looks (verification/results/acer_learning.md) left the
claim "ACER reaches 475 in fewer environment steps than A2C's preset" unsupported:
medians 60k against 70k over 23 seeds, one-sided Mann-Whitney p = 0.088.  This stage
changes what is tuned (the replay's size, the entropy bonus, the trust region), not the
measure: the first logged step (every 2,000) at which the mean training return of the
last 20 episodes reaches 475, 'never' above every count.

    nice -n 10 python verification/acer_stage4.py tune [--only B J5 ...] [--seeds ...]
    nice -n 10 python verification/acer_stage4.py confirm [--only acer a2c]
    python verification/acer_stage4.py report
"""

import acer_learning as acer
import learning_runs as lr

# tuning: seeds 100-107, 100k steps per candidate; A2C's preset (200k) for reference
TUNE_SEEDS = list(range(100, 108))
TUNE_BASE = {"total_steps": "100000", "entropy_coef": "0", "hidden": "128,128",
             "lr": "1e-3", "replay_ratio": "8", "n_envs": "4", "n_steps": "10",
             "anneal_lr": "false", "replay_batch": "0", "buffer_size": "50000",
             "trust_region": "true", "c": "10", "delta": "1", "alpha": "0.99"}
CANDIDATES = {   # name: (what differs from B, the current preset, overrides)
    "B": ("the current preset (third stage's B) at 100k steps", {}),
    "J5": ("a replay of 5,000 steps instead of 50,000", {"buffer_size": "5000"}),
    "J10": ("a replay of 10,000 steps", {"buffer_size": "10000"}),
    "I": ("entropy bonus 0.01", {"entropy_coef": "0.01"}),
    "T": ("no trust region", {"trust_region": "false"}),
    # written after the five above had run (J5 best, median 24k; J10 33k; B 57k), before
    # these ran: the replay's size further down, and J5 with half the replayed updates
    "J2": ("a replay of 2,000 steps", {"buffer_size": "2000"}),
    "J5R4": ("a replay of 5,000 steps and replay ratio 4",
             {"buffer_size": "5000", "replay_ratio": "4"}),
}


# The choice, written after all seven candidates had run: the lowest median step reaching
# 475 over seeds 100-107 among the candidates whose final evaluation is >= 475 on every
# tuning seed (the preset must also meet the final-evaluation target). J2 had
# the lowest median (20k) but evaluated at 159 on seed 103, so it is out: J5 (24k).
# The rule is stated after seeing the runs; the confirmation below is what decides.
#
# The confirmation, written after the tuning above and before any of its runs:
# * ACER: the chosen candidate's settings, spelled out (they are the CartPole-v1 preset
#   in minipg/algorithms/acer.py from this stage on; `confirm` checks that they still are),
#   100k steps; A2C: its preset unchanged (200k steps, the learning rate decayed over them).
# * Seeds 200-219, used for nothing else; the measure above.
# * The decision: a one-sided Mann-Whitney U test (scipy.stats.mannwhitneyu, alternative
#   'less': ACER's steps to 475 stochastically smaller than A2C's) at the level 0.01, not
#   0.05: this is the fifth look at the claim (seeds 30-32, 60-62, 70-79, the 23-seed
#   decision, this), and 0.05 / 5 = 0.01 keeps the family's level at 0.05 (Bonferroni).
#   The claim holds when p < 0.01 and ACER's median final evaluation over the 20 seeds
#   is >= 475; the report says what the test says, whatever it is.
CHOSEN = "J5"
CONFIRM_SEEDS = list(range(200, 220))
CONFIRM_LEVEL = 0.01
CONFIRM_PLAN = {"acer": dict(TUNE_BASE, **CANDIDATES[CHOSEN][1]), "a2c": None}


def tune_name(candidate):
    return f"s4tune:{candidate}:acer:CartPole-v1"


def cmd_tune(args):
    names = args.only or list(CANDIDATES)
    seeds = args.seeds
    jobs = [(tune_name(c), "acer", dict(TUNE_BASE, **CANDIDATES[c][1]), seed)
            for c in names if c != "a2c" for seed in seeds]
    if "a2c" in names:
        jobs += [("s4tune:a2c:CartPole-v1", "a2c", None, seed) for seed in seeds]
    acer.train_each(jobs, args.out, args.force)


def confirm_name(algo):
    return f"s4confirm:{algo}:CartPole-v1"


def check_chosen_is_preset():
    """Stop unless the CartPole-v1 preset is the chosen candidate's settings."""
    from minipg.algorithms import get
    from minipg.run import resolve_config
    preset = resolve_config(get("acer"), "CartPole-v1", {})
    chosen = resolve_config(get("acer"), "CartPole-v1", CONFIRM_PLAN["acer"])
    if preset != chosen:
        raise SystemExit(f"ACER's CartPole-v1 preset is not candidate {CHOSEN}: "
                         f"{preset} against {chosen}")


def cmd_confirm(args):
    check_chosen_is_preset()
    names = args.only or list(CONFIRM_PLAN)
    acer.train_each([(confirm_name(a), a, CONFIRM_PLAN[a], seed)
                     for seed in CONFIRM_SEEDS for a in names], args.out, args.force)


if __name__ == "__main__":
    lr.main(__doc__, {"tune": cmd_tune, "confirm": cmd_confirm}, "candidates, e.g. B J5 (tune)",
            "/tmp/minipg-acer-runs",
            seeds=TUNE_SEEDS)
