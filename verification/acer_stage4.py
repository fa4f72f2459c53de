"""Issue 18, fourth stage: ACER's CartPole-v1 preset tuned again, then one confirmation
against A2C's preset on fresh seeds, decided by a test stated before its runs.

The third stage and its two wider looks (verification/results/acer_learning.md) left the
claim "ACER reaches 475 in fewer environment steps than A2C's preset" unsupported:
medians 60k against 70k over 23 seeds, one-sided Mann-Whitney p = 0.088.  This stage
changes what is tuned (the replay's size and ratio, the entropy bonus, the trust
region), not the measure: the first logged step (every 2,000) at which the mean
training return of the last 20 episodes reaches 475, 'never' above every count.

    nice -n 10 python verification/acer_stage4.py tune [--only B J5 ... a2c] [--seeds ...]
    nice -n 10 python verification/acer_stage4.py confirm [--only acer a2c]   (seeds 200-219;
                                                          --seeds is tune's)
    python verification/acer_stage4.py report

Run directories go under --out (here /tmp/acertune-runs, beside the earlier stages');
`report` reads them and writes verification/results/acer_stage4.md.
"""

import acer_learning as stages
import learning_runs as lr

# tuning: seeds 100-107, 100k steps per candidate; A2C's preset (200k) for reference
TUNE_SEEDS = list(range(100, 108))
TUNE_BASE = {"total_steps": "100000", "entropy_coef": "0", "hidden": "128,128",
             "lr": "1e-3", "replay_ratio": "8", "n_envs": "4", "n_steps": "10",
             "anneal_lr": "false", "replay_batch": "0", "buffer_size": "50000",
             "trust_region": "true", "c": "10", "delta": "1", "alpha": "0.99"}
CANDIDATES = {   # name: (what differs from B, the current preset, overrides)
    "B": ("the third stage's preset (its B), the preset before this stage, at 100k steps",
          {}),
    "J5": ("a replay of 5,000 steps instead of 50,000", {"buffer_size": "5000"}),
    "J10": ("a replay of 10,000 steps", {"buffer_size": "10000"}),
    "I": ("entropy bonus 0.01", {"entropy_coef": "0.01"}),
    "T": ("no trust region", {"trust_region": "false"}),
    # written after B, J5, J10 and T had run and I had run six of its eight seeds (J5
    # best, median 24k; J10 33k; B 57k), before these ran: the replay's size further
    # down, and J5 with half the replayed updates
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
#   (Counted after the runs, it is the sixth: the first preset's held-out seeds 10-12
#   were a look too, and 0.05 / 6 = 0.0083; see the report's notes.)
#   The claim holds when p < 0.01 and ACER's median final evaluation over the 20 seeds
#   is >= 475; the report says what the test says, whatever it is.
CHOSEN = "J5"
CONFIRM_SEEDS = list(range(200, 220))
CONFIRM_LEVEL = 0.01
CONFIRM_PLAN = {"acer": dict(TUNE_BASE, **CANDIDATES[CHOSEN][1]), "a2c": None}


# A2C's preset on the tuning seeds, for reference: a row of the tuning table
A2C_ROW = {"a2c": ("A2C's preset (200k steps), for reference", None)}


def tune_name(candidate):
    """The runs' name of a candidate, or of A2C's reference row."""
    if candidate in A2C_ROW:
        return f"s4tune:{candidate}:CartPole-v1"
    return f"s4tune:{candidate}:acer:CartPole-v1"


def cmd_tune(args):
    names = args.only or [*CANDIDATES, *A2C_ROW]
    jobs = [(tune_name(c), "a2c", None, seed) if c in A2C_ROW
            else (tune_name(c), "acer", dict(TUNE_BASE, **CANDIDATES[c][1]), seed)
            for c in names for seed in args.seeds]
    stages.train_each(jobs, args.out, args.force)


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
    stages.train_each([(confirm_name(a), a, CONFIRM_PLAN[a], seed)
                       for seed in CONFIRM_SEEDS for a in names], args.out, args.force)


def confirm_table(out_root):
    """The confirmation's table and the decision (empty where a run is missing)."""
    import statistics
    lines = lr.table_head("algorithm", "budget (steps)", "steps reaching 475, seeds 200-219",
                          "median", "never reached", "final eval below 475",
                          "median final eval", "CPU s")
    steps, evals = {}, {}
    for algo in CONFIRM_PLAN:
        results = stages.seed_results(out_root, confirm_name(algo), CONFIRM_SEEDS)
        if results is None:
            return []
        steps[algo] = [step for _, step, _ in results]
        evals[algo] = [ev for ev, _, _ in results]
        budget = stages.run_budget(out_root, confirm_name(algo), CONFIRM_SEEDS[0])
        cells = stages.many_seeds_cells(results)
        lines.append(f"| {algo} | {budget} | " + " | ".join(
            cells[k] for k in ("steps", "median", "never", "below", "median eval", "CPU s"))
            + " |")
    u, p = stages.one_sided_test(steps)
    median_eval = statistics.median(evals["acer"])
    holds = p < CONFIRM_LEVEL and median_eval >= stages.LEVEL
    return lines + ["", f"The decision: one-sided Mann-Whitney U = {u:.1f}, p = {p:.2g} "
                        f"(level {CONFIRM_LEVEL}); ACER's median final evaluation "
                        f"{median_eval:.1f} (target >= {stages.LEVEL:.0f}). The claim "
                        f"{'HOLDS' if holds else 'does NOT hold'} on seeds 200-219."]


INTRO = """\
Commands: `nice -n 10 python verification/acer_stage4.py tune --out DIR` (two processes,
each one run at a time, split by `--only`), then `... confirm --out DIR`, then `python
verification/acer_stage4.py report --out DIR` (here DIR = /tmp/acertune-runs). One BLAS
thread, float64; CPU s is user + sys of the training processes, all seeds together.

The third stage and two wider looks left the claim unsupported (acer_learning.md:
medians 60k against 70k steps over 23 seeds, one-sided Mann-Whitney p = 0.088). This
stage tunes what the third did not: the replay's size (stable-baselines' ACER keeps
5,000 steps by default; minipg's default is OpenAI baselines' Atari 50,000), the entropy
bonus and the trust region. The measure is unchanged: the first logged step (every
2,000) at which the mean training return of the last 20 episodes reaches 475; 'never'
ranks above every count. Final evaluation: deterministic policy, 10 episodes.

* Tuning: seeds 100-107 (8, used for nothing else), 100k steps per candidate, every
  setting spelled out (so a candidate means the same whatever the preset is). B, J5,
  J10, I and T were written before any ran; J2 and J5R4 after B, J5, J10 and T had
  run and I had run six of its eight seeds (J5 best), before J2 and J5R4 ran.
* The choice, stated after all seven had run: the lowest median among the candidates
  whose final evaluation is >= 475 on every tuning seed, since the preset must meet
  the final-evaluation target too. J2 had the lowest median (20k) but evaluated at
  159 on seed 103, so it is out; J5, a 5,000-step replay, is chosen (24k).
* The confirmation, written and committed (ecabf79) before any of its runs: J5 as the
  CartPole-v1 preset (100k steps) against A2C's preset unchanged (200k steps, its
  learning rate decayed over them), seeds 200-219, used for nothing else. The claim
  holds when a one-sided Mann-Whitney U test (scipy.stats.mannwhitneyu, alternative
  'less') gives p < 0.01 and ACER's median final evaluation is >= 475. The level is
  0.01, not 0.05, because this was counted as the fifth look at the claim (seeds 30-32,
  60-62, 70-79, the 23-seed decision, this one): 0.05 / 5 keeps the family's level at
  0.05. A review after the runs found a sixth, made before all these: the first
  preset's held-out seeds 10-12 (acer_learning.md); 0.05 / 6 = 0.0083."""


def cmd_report(args):
    lines = (["# ACER on CartPole-v1: a fourth tuning stage and its confirmation", "",
              INTRO, "", "## Tuning, seeds 100-107, 100k steps", ""]
             + stages.tune_table(args.out, {**CANDIDATES, **A2C_ROW}, TUNE_SEEDS, tune_name,
                                 "B")[0]
             + ["", f"Chosen: {CHOSEN}.", "",
                "## Confirmation, seeds 200-219 (run once, after the choice)", ""]
             + (confirm_table(args.out) or ["(not run yet)"]) + ["", NOTES])
    lr.write_report(lines, lr.results_path("acer_stage4.md"))


NOTES = """\
## Notes (written after the confirmation)

* The claim holds: on the 20 fresh seeds ACER's preset reached a training return of 475
  at a median of 25k steps (16k-52k), A2C's preset at 75k (32k-108k); U = 5.5 of a
  possible 400, p = 7.2e-08 (scipy's normal approximation, which ties force; the exact
  distribution gives 2.2e-10), far below the stated 0.01 and the 0.0083 of six looks.
  Every A2C run (the fastest at 32k) was slower than ACER's median. ACER's budget is
  100k steps against A2C's 200k.
* On the tuning seeds the gain was 24k against B's 57k and A2C's 66k; the fresh seeds
  gave 25k: this time the tuning seeds did not overstate it (the third stage's had: 41k
  on tuning seeds, 60-70k fresh). The replay's size is what mattered: 2,000, 5,000 and
  10,000 steps gave medians of 20k, 24k and 33k against 57k with 50,000. A smaller
  replay holds segments from policies nearer the current one, so the importance weights
  are nearer 1 and the Retrace traces are cut less: over each run's logged rows the
  mean |rho_mean - 1| has a median over the 8 seeds of 0.19 with the 50,000-step
  replay, 0.14 with 10,000, 0.08 with 5,000 and 0.08 with 2,000.
* Final evaluations: 1 of 20 ACER runs evaluated below 475 (seed 203: 270.8, while its
  training return was 500 at the end, after a dip to 349 at 88k-90k steps); A2C none.
  With the new preset the first table's seeds 0-2 (acer_learning.md) evaluate at 332.7,
  500 and 500: seed 0's training return fell from 500 at 84k to 265 at 100k. So late
  falls remain, as often as with the 50k replay (2 of 23 runs below 475 there, 2 of 23
  here with seeds 0-2 counted), and the median final evaluation is 500 in both sets.
* The trust region earns its place: without it (T) the median was 40k but two of eight
  runs ended at 229 and 376. The entropy bonus 0.01 (I) slowed learning (68k, two runs
  never reached 475).
* Compute: an ACER run costs 28 s of CPU for its 100k steps, A2C's 11 s for 200k, so
  ACER spends about 5 times A2C's CPU per environment step (it makes about 9 updates
  per 40 steps, one on-policy and a mean of 8 replayed, against A2C's one); to reach
  475, ACER's median 25k steps is about 7 s of CPU, A2C's 75k about 4 s. The claim, and
  the paper's, is about environment steps, not computation. J5R4 (replay ratio 4)
  reached 475 at a median of 28k with 60% of J5's CPU; it is not the preset because
  the rule chose by steps.
* CPU of this stage (user + sys, one BLAS thread, `nice -n 10`, two runs at a time on
  the 2 cores, three for a few minutes twice, little other load): tuning 64 runs
  (A2C's 8 included) 1,600 s, confirmation 40 runs 786 s; the rerun of seeds 0-2 took
  87 s of wall time. About 41 minutes in all.
* Left alone: `buffer_size`'s default stays 50,000 (OpenAI baselines'); the Acrobot-v1,
  Pendulum-v1 and InvertedPendulum-v5 presets keep it and met their targets with it."""


if __name__ == "__main__":
    lr.main(__doc__, {"tune": cmd_tune, "confirm": cmd_confirm, "report": cmd_report},
            "candidates, e.g. B J5 (tune)",
            "/tmp/minipg-acer-runs",
            seeds=TUNE_SEEDS)
