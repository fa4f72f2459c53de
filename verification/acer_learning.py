"""Learning evidence for issue 18: ACER with its presets on four tasks.

Each task is trained with ACER's preset (no other setting) for 3 seeds through the
same run loop `minipg train` uses, and the final deterministic evaluation (10 episodes)
is recorded.  Targets (median over seeds of that final evaluation return):

    CartPole-v1          >= 475, in fewer environment steps than A2C's preset needs
    Acrobot-v1           >= -100
    Pendulum-v1          >= -250
    InvertedPendulum-v5  >= 950   (needs the optional `mujoco` package)

The paper's claim is sample efficiency from replay, so the CartPole row is read beside
A2C's: the step at which the mean training return of the last 20 episodes first
reached 475 ('reached target at', as verification/results/onpolicy_learning.md
reports it for A2C's preset), and ACER's whole budget against A2C's.

The CartPole-v1 preset was tuned on seeds 0-3 and 20-23 (and 40-41); `heldout` trains
the second-stage ACER preset (its settings pinned below) and A2C's CartPole-v1 preset on
seeds 30, 31, 32 (kept in the report as history).  A third stage: `tune` trains the
CANDIDATES on seeds 20-23 (150k steps), `confirm` ACER's preset and A2C's (also at 150k
steps) once on seeds 60, 61, 62, `previous` candidate A on 60-62 for context.

A fourth stage, in verification/acer_stage4.py, changed the CartPole-v1 preset (a
5,000-step replay, 100k steps) and confirmed it on fresh seeds 200-219.

Steps: `run`, `heldout`, `tune`, `confirm` and `previous` train (sequentially, one run at
a time) and leave run directories under --out (default /tmp/minipg-acer-runs, outside
the work tree); `report` reads them and writes verification/results/acer_learning.md.

    nice -n 10 python verification/acer_learning.py run [--only CartPole-v1 ...] [--seeds 0 1 2]
    nice -n 10 python verification/acer_learning.py heldout
    nice -n 10 python verification/acer_learning.py tune [--only A B ...]
    nice -n 10 python verification/acer_learning.py confirm
    nice -n 10 python verification/acer_learning.py previous
    python verification/acer_learning.py report
"""

import learning_runs as lr

lr.one_blas_thread()

# (algorithm, task, target); the step budget is the preset's total_steps
PLAN = [("acer", "CartPole-v1", 475.0), ("acer", "Acrobot-v1", -100.0),
        ("acer", "Pendulum-v1", -250.0), ("acer", "InvertedPendulum-v5", 950.0)]

# A2C's preset on CartPole-v1 (200k steps), from verification/results/onpolicy_learning.md:
# the first logged step with a training return >= 475, seeds 0, 1, 2
A2C_REACHED = {0: 44000, 1: 70000, 2: 66000}
A2C_BUDGET = 200_000


# seeds 30-32: the first confirmation of the CartPole-v1 comparison, made with the
# second-stage preset (pinned here, so that `heldout` reproduces it whatever the preset
# is now); its table is kept in the report as history (HELDOUT_HISTORY)
HELDOUT_SEEDS = [30, 31, 32]
SECOND_STAGE_PRESET = {"total_steps": "100000", "entropy_coef": "0", "hidden": "128,128",
                       "lr": "1e-3", "replay_ratio": "8", "n_steps": "20",
                       "buffer_size": "50000"}
HELDOUT_PLAN = [("acer", SECOND_STAGE_PRESET), ("a2c", None)]

# ---- third tuning stage (CartPole-v1): candidates on seeds 20-23, then fresh seeds 60-62
TUNE_SEEDS = [20, 21, 22, 23]
CONFIRM_SEEDS = [60, 61, 62]
LEVEL = 475.0
# Every candidate spells out every setting the stages tuned, so that it means the same
# whatever the preset in minipg/algorithms/acer.py is; "A" is the second-stage preset at
# the stage's budget of 150k steps.
TUNE_BASE = {"total_steps": "150000", "entropy_coef": "0", "hidden": "128,128",
             "lr": "1e-3", "replay_ratio": "8", "n_envs": "4", "n_steps": "20",
             "anneal_lr": "false", "replay_batch": "0", "buffer_size": "50000"}
CANDIDATES = {   # name: (what differs from A, overrides); written before any was run
    "A": ("the second-stage preset (lr 1e-3, replay ratio 8, 4 envs x 20 steps)", {}),
    "B": ("segments of 10 steps (twice the updates per environment step)",
          {"n_steps": "10"}),
    "C": ("segments of 10 steps, replay ratio 4 (A's updates per step, fresher on-policy "
          "updates)", {"n_steps": "10", "replay_ratio": "4"}),
    "D": ("learning rate decayed linearly to 0 over the 150k steps", {"anneal_lr": "true"}),
    "E": ("8 segments per replayed update instead of 4", {"replay_batch": "8"}),
    # added after A-E had run (B best; C, D, E slower than A), before G and H were run:
    # B's direction, more updates per environment step, pushed further in two ways
    "G": ("segments of 5 steps (four times A's updates per environment step)",
          {"n_steps": "5"}),
    "H": ("segments of 10 steps and replay ratio 16 (four times A's updates per "
          "environment step)", {"n_steps": "10", "replay_ratio": "16"}),
}
# ACER's CartPole-v1 preset of the third stage (candidate B), pinned so that `confirm`,
# `wide` and `final` reproduce these runs whatever the preset is now (the fourth stage,
# verification/acer_stage4.py, changed it); the A2C rows of the confirmation: its preset
# unchanged (200k steps, the learning rate decayed over them), and the same with ACER's
# budget of 150k steps
THIRD_STAGE_PRESET = {"total_steps": "150000", "entropy_coef": "0", "hidden": "128,128",
                      "lr": "1e-3", "replay_ratio": "8", "n_steps": "10",
                      "buffer_size": "50000"}
CONFIRM_PLAN = [("acer", "acer", THIRD_STAGE_PRESET), ("a2c", "a2c", None),
                ("a2c 150k", "a2c", {"total_steps": "150000"})]
# A wider comparison, written before its runs: both presets as they were then (ACER's
# now pinned), ten seeds used for nothing else, and a one-sided Mann-Whitney U test of
# "ACER needs fewer steps".
WIDE_SEEDS = list(range(70, 80))
WIDE_PLAN = [("acer", "acer", THIRD_STAGE_PRESET), ("a2c", "a2c", None)]
WIDE_ALPHA = 0.05
# Written after the 70-79 test and before these runs: the 13 seeds of the current preset
# pooled (60-62, 70-79) gave p = 0.075, so ten more fresh seeds, and the DECISION is the
# one-sided test on all 23 seeds of the current preset (60-62, 70-79, 80-89) at 0.05.
FINAL_SEEDS = list(range(80, 90))
POOLED_SEEDS = CONFIRM_SEEDS + WIDE_SEEDS + FINAL_SEEDS


def cmd_run(args):
    selected = [("acer", e) for e in args.only] if args.only else [(a, e) for a, e, _ in PLAN]
    lr.run_presets(selected, args.seeds, args.out, args.force)


def train_each(jobs, out_root, force):
    """Train each job (name, algorithm, overrides or None for the preset, seed) on
    CartPole-v1 into ``out_root/NAME-SEED``, one at a time, skipping finished runs unless
    ``force``; CPU seconds go into wall.json."""
    for name, algo, overrides, seed in jobs:
        out = lr.run_dir(out_root, name, seed)
        if lr.finished(out) and not force:
            print(f"{out}: done already", flush=True)
            continue
        ev, times = lr.train_timed(algo, "CartPole-v1", seed, out, overrides, cpu=True)
        print(f"{name} seed {seed}: eval {ev['return_mean']:.1f} wall {times['wall_s']:.0f}s "
              f"cpu {times['cpu_s']:.0f}s", flush=True)


def cmd_heldout(args):
    train_each([(f"{algo}:CartPole-v1", algo, overrides, seed)
                for algo, overrides in HELDOUT_PLAN for seed in HELDOUT_SEEDS],
               args.out, args.force)


def tune_name(candidate):
    return f"tune:{candidate}:acer:CartPole-v1"


def confirm_name(label):
    return f"confirm:{label.replace(' ', '')}:CartPole-v1"


def cmd_tune(args):
    names = args.only or list(CANDIDATES)
    train_each([(tune_name(c), "acer", dict(TUNE_BASE, **CANDIDATES[c][1]), seed)
                for c in names for seed in TUNE_SEEDS], args.out, args.force)


def cmd_confirm(args):
    train_each([(confirm_name(label), algo, overrides, seed)
                for label, algo, overrides in CONFIRM_PLAN for seed in CONFIRM_SEEDS],
               args.out, args.force)


def wide_name(label):
    return f"wide:{label}:CartPole-v1"


def cmd_wide(args):
    train_each([(wide_name(label), algo, overrides, seed)
                for seed in WIDE_SEEDS for label, algo, overrides in WIDE_PLAN],
               args.out, args.force)


def cmd_final(args):
    train_each([(wide_name(label), algo, overrides, seed)
                for seed in FINAL_SEEDS for label, algo, overrides in WIDE_PLAN],
               args.out, args.force)


def pooled_steps(out_root, label):
    """Steps to 475 of ``label``'s runs on POOLED_SEEDS (the 60-62 runs are the
    confirmation's, the same preset), or None where one is missing."""
    found = []
    for seeds, name in ((CONFIRM_SEEDS, confirm_name(label)),
                        (WIDE_SEEDS + FINAL_SEEDS, wide_name(label))):
        results = seed_results(out_root, name, seeds)
        if results is None:
            return None
        found += results
    return found


def pooled_table(out_root):
    """The decision: both presets on the 23 seeds, and the one-sided test."""
    lines = lr.table_head("algorithm", "steps reaching 475, seeds 80-89", "median, 23 seeds",
                          "never reached", "final eval below 475", "CPU s (80-89)")
    steps = {}
    for label, _, _ in WIDE_PLAN:
        pooled = pooled_steps(out_root, label)
        if pooled is None:
            return []
        steps[label] = [step for _, step, _ in pooled]
        everything = many_seeds_cells(pooled)
        final = many_seeds_cells(pooled[-len(FINAL_SEEDS):])      # seeds 80-89
        lines.append(f"| {label} | {final['steps']} | {everything['median']} | "
                     f"{everything['never']} | {everything['below']} | {final['CPU s']} |")
    u, p = one_sided_test(steps)
    verdict = "supports" if p < WIDE_ALPHA else "does NOT support"
    return lines + ["", f"The decision, one-sided Mann-Whitney U on the 23 seeds (60-62, "
                        f"70-79, 80-89): U = {u:.1f}, p = {p:.3f}; "
                        f"at the level {WIDE_ALPHA} the test {verdict} the claim."]


def run_budget(out_root, name, seed):
    """The total_steps a finished run had (its config.json)."""
    return lr.read_json(lr.run_dir(out_root, name, seed), "config.json")["config"]["total_steps"]


def one_sided_test(steps):
    """(U, p) of the one-sided Mann-Whitney U test that ACER's steps to 475 are
    stochastically smaller than A2C's; 'never' (inf) ranks above every count."""
    from scipy.stats import mannwhitneyu
    test = mannwhitneyu(steps["acer"], steps["a2c"], alternative="less", method="auto")
    return test.statistic, test.pvalue


def wide_table(out_root):
    """The ten-seed table and the test's verdict (empty where a run is missing)."""
    lines = lr.table_head("algorithm", "budget (steps)", "steps reaching 475, seeds 70-79",
                          "median", "never reached", "median eval", "CPU s")
    steps = {}
    for label, _, _ in WIDE_PLAN:
        results = seed_results(out_root, wide_name(label), WIDE_SEEDS)
        if results is None:
            return []
        budget = run_budget(out_root, wide_name(label), WIDE_SEEDS[0])
        steps[label] = [step for _, step, _ in results]
        cells = many_seeds_cells(results)
        lines.append(f"| {label} | {budget} | " + " | ".join(
            cells[k] for k in ("steps", "median", "never", "median eval", "CPU s")) + " |")
    u, p = one_sided_test(steps)
    verdict = ("supports" if p < WIDE_ALPHA else "does NOT support")
    return lines + ["", f"One-sided Mann-Whitney U test, H1: ACER's steps to 475 are "
                        f"stochastically smaller than A2C's: U = {u:.1f}, "
                        f"p = {p:.3f}; at the level {WIDE_ALPHA} the test "
                        f"{verdict} the claim."]


def cmd_previous(args):
    """Candidate A (the preset before the third stage) on the confirmation seeds: run
    after the confirmation, for context only (no choice depends on it)."""
    train_each([(tune_name("A"), "acer", dict(TUNE_BASE, **CANDIDATES["A"][1]), seed)
                for seed in CONFIRM_SEEDS], args.out, args.force)


def previous_row(out_root):
    """The table row of ``cmd_previous``'s runs, or [] where one is missing."""
    results = seed_results(out_root, tune_name("A"), CONFIRM_SEEDS)
    if results is None:
        return []
    return ["| acer, candidate A (run after the confirmation, context only) | "
            f"{TUNE_BASE['total_steps']} | " + " | ".join(comparison_rows(results,
                                                                        CONFIRM_SEEDS)) + " |"]


def seed_results(out_root, name, seeds):
    """[(final evaluation, first step reaching LEVEL or inf, CPU s)] of finished runs, or
    None where one is missing."""
    import math
    results = []
    for seed in seeds:
        out = lr.run_dir(out_root, name, seed)
        if not lr.finished(out):
            return None
        step = lr.first_step_reaching(lr.read_progress(out), LEVEL)
        results.append((lr.read_json(out, "eval.json")["return_mean"],
                        math.inf if step is None else step,
                        lr.read_wall(out).get("cpu_s", float("nan"))))
    return results


def many_seeds_cells(results):
    """A many-seed row's cells from ``seed_results``: "steps" (each seed's steps to 475),
    "median" (theirs), "never" (runs that never reached 475), "below" (final evaluations
    below 475), "median eval" and "CPU s" (all the seeds' runs)."""
    import math
    import statistics
    steps = [step for _, step, _ in results]
    return {"steps": ", ".join(steps_text(x) for x in steps),
            "median": steps_text(statistics.median(steps)),
            "never": str(sum(math.isinf(x) for x in steps)),
            "below": str(sum(ev < LEVEL for ev, _, _ in results)),
            "median eval": f"{statistics.median(ev for ev, _, _ in results):.1f}",
            "CPU s": f"{sum(cpu for _, _, cpu in results):.0f}"}


def steps_text(step):
    import math
    return "never" if math.isinf(step) else f"{step:.0f}"


def comparison_rows(results, seeds):
    """Cells: per seed 'eval / reached', the median step, the worst step, the median eval,
    the CPU seconds of all the seeds' runs."""
    import statistics
    cells = [f"{ev:.1f} / {steps_text(step)}" for ev, step, _ in results]
    steps = [step for _, step, _ in results]
    return cells + [steps_text(statistics.median(steps)), steps_text(max(steps)),
                    f"{statistics.median(ev for ev, _, _ in results):.1f}",
                    f"{sum(cpu for _, _, cpu in results):.0f}"]


def tune_table(out_root, candidates=CANDIDATES, seeds=TUNE_SEEDS, run_name=tune_name,
               baseline="A"):
    """The candidates' table (a candidate not run yet says so) and the one with the lowest
    median step reaching 475, ties by the worst seed; ``candidates`` maps a name to (what
    differs from ``baseline``, overrides), ``run_name`` a name to its runs' name."""
    head = lr.table_head("candidate", f"differs from {baseline} by",
                         *(f"seed {s}: eval / reached 475" for s in seeds),
                         "median step reaching 475", "worst seed", "median eval", "CPU s")
    ranked = []
    for name, (what, _) in candidates.items():
        results = seed_results(out_root, run_name(name), seeds)
        if results is None:
            head.append(f"| {name} | {what} |" + " not run |" * (len(seeds) + 4))
            continue
        import statistics
        steps = [step for _, step, _ in results]
        ranked.append((statistics.median(steps), max(steps), name))
        head.append(f"| {name} | {what} | " + " | ".join(comparison_rows(results, seeds))
                    + " |")
    return head, (min(ranked)[2] if ranked else None)


def confirm_table(out_root):
    """The fresh-seed table and its verdict (empty where a run is missing)."""
    import statistics
    lines = lr.table_head("algorithm", "budget (steps)", *(f"seed {s}: eval / reached 475"
                                                           for s in CONFIRM_SEEDS),
                          "median step reaching 475", "worst seed", "median eval", "CPU s")
    medians = {}
    for label, algo, overrides in CONFIRM_PLAN:
        results = seed_results(out_root, confirm_name(label), CONFIRM_SEEDS)
        if results is None:
            return []
        budget = run_budget(out_root, confirm_name(label), CONFIRM_SEEDS[0])
        medians[label] = statistics.median(step for _, step, _ in results)
        lines.append(f"| {label} | {budget} | " + " | ".join(comparison_rows(results,
                                                                             CONFIRM_SEEDS))
                     + " |")
    verdict = "does" if medians["acer"] < medians["a2c"] else "does NOT"
    seeds = ", ".join(map(str, CONFIRM_SEEDS))
    return lines + previous_row(out_root) + ["", f"On the fresh seeds {seeds} ACER's "
                        f"preset {verdict} reach a training return of 475 in fewer "
                        f"environment steps than A2C's preset (medians "
                        f"{steps_text(medians['acer'])} against {steps_text(medians['a2c'])}; "
                        f"A2C with 150k steps: {steps_text(medians['a2c 150k'])})."]


WIDE_INTRO = """\
Three seeds cannot settle the comparison: on seeds 60-62 ACER's steps to 475 ran from
14k to 104k. So, after the third stage and written before these runs: both presets as
they are in the code (ACER's CartPole-v1 preset, 150k steps; A2C's, 200k steps), the
same measure (first logged step, every 2,000 steps, at which the mean training return
of the last 20 episodes reaches 475; 'never' ranks above every count), seeds 70-79,
used for nothing else, and a one-sided Mann-Whitney U test (scipy.stats.mannwhitneyu,
alternative 'less') of the claim at the level 0.05. Command: `nice -n 10 python
verification/acer_learning.py wide --out DIR`, then `report --out DIR`."""


FINAL_INTRO = """\
Written after the 70-79 test and before these runs. The 70-79 test supports the claim,
but the confirmation on seeds 60-62 had not (medians 70k against 42k), and the 13
seeds of the current preset pooled (60-62 and 70-79) give medians 60k against 74k
and a one-sided p = 0.075, not significant at 0.05. Three looks at one question
call for one decision stated in advance: ten more fresh seeds, 80-89, then the
one-sided Mann-Whitney U test on all 23 seeds of the current preset at the level
0.05 decides, whatever it says. Command: `nice -n 10 python
verification/acer_learning.py final --out DIR`, then `report --out DIR`."""


NOTES = """\
## Notes

* Budget and machine: every run here and every tuning run before them went one at a
  time under `nice -n 10`, one BLAS thread, on the shared 2-core machine (load average
  3-7 from other sessions, so the wall times above are inflated); the issue's budget
  was about 40 core-minutes for all learning runs, tuning included. Tuning took 37 runs
  (about 12 minutes of wall time, 50k-100k steps each) before the presets were fixed;
  the runs in the table were made after, with the presets as they are in
  `minipg/algorithms/acer.py`. Measured CPU time (user + sys) of the table's runs:
  Pendulum-v1 seeds 1-2 together 2.8 min, InvertedPendulum-v5 all three 1.3 min; the
  others were not timed in CPU (their wall times, inflated by the load, bound it).
  Everything together stayed under 25 core-minutes.
* How the presets were chosen. CartPole-v1, 50k steps, seeds 0-1 then 2-3: the
  defaults (entropy 0.01, 64-64 tanh layers, Adam 7e-4, c = 10,
  delta = 1, alpha = 0.99, replay ratio 4, segments of 20 steps from 4 environments)
  reached 290 and 476; without the entropy bonus 500 and 500 on seeds 0-1 but 118 and
  209 on seeds 2-3 (a near-deterministic policy stuck near a return of 110); lr 1e-3,
  delta 0.1 or 5, replay ratio 8, 8 environments, no clipping, no trust region, lr 3e-4,
  gamma 0.98 and 50-step segments did not fix seeds 2-3; 128-128 layers gave 500 and
  318 at 50k, and 500 on seeds 0-2 at 100k: the first preset. Held-out seeds showed it
  neither robust nor faster than A2C; a second stage on seeds 20-23 added lr 1e-3 and
  replay ratio 8 (section "Held-out seeds"), and the CartPole-v1 rows were rerun with
  that preset (they have been rerun with each later preset; they are the fourth
  stage's now). Acrobot-v1 got the same
  changes and one trial (seeds 0-1, 100k: -77, -99); no further tuning. Pendulum-v1:
  one 100k trial of the preset (gamma 0.95, 128-128, initial log-std -0.5) evaluated
  at -302 with learning under way from ~70k steps, so its budget is 200k.
  InvertedPendulum-v5: the defaults with initial log-std -0.5, no trial before the
  runs.
* Close calls: Acrobot-v1 seed 1 evaluated at -99.3 (its training return was near -85);
  the median (-89.6) meets the target. Pendulum-v1's stochastic training returns
  (-156 to -181 at the end) are below its deterministic evaluations.
* Pendulum-v1 seed 0 ran beside the full test suite (wall 680 s); InvertedPendulum-v5
  used mujoco as installed here (the `mujoco` extra).
* After the Pendulum-v1 runs, continuous ACER's log importance ratio was capped at 690
  (exp would overflow to inf above ~709); without the cap such a run would have stopped
  with an error on the infinite weight, so the finished runs above are unchanged by it.
* The trust region binds often: the mean projection scale (`trust_region_scale` in
  progress.csv) is 0.5-2 on CartPole; with the average policy equal to the current
  one (at the start) k = -1 for categorical statistics, a direction the softmax
  ignores, so the projection changes nothing until the two policies part."""


HELDOUT_INTRO = """\
History, kept as it was recorded. The comparison above uses seeds 0-2, which the first
preset was tuned on. Below, the CartPole-v1 presets of ACER (the second-stage preset,
committed then: lr 1e-3, replay ratio 8, entropy 0, 128-128, 100k steps) and A2C, each
run once on seeds 30, 31, 32, which no tuning run used. They were made as `minipg train
acer|a2c --env CartPole-v1 --seed S`, one BLAS thread, two at a time; `nice -n 10 python
verification/acer_learning.py heldout` runs the same (ACER's settings of then pinned)
through the same run loop. Columns as above.

| algorithm | budget (steps) | seed 30: eval / reached 475 | seed 31: eval / reached 475 | seed 32: eval / reached 475 | median eval | median step reaching 475 |
|---|---|---|---|---|---|---|
| acer | 100000 | 500.0 / 84000 | 492.5 / never | 500.0 / 26000 | 500.0 | 84000 |
| a2c | 200000 | 500.0 / 80000 | 500.0 / 82000 | 500.0 / 70000 | 500.0 | 80000 |

On the held-out seeds ACER's preset does NOT reach a training return of 475 in fewer
environment steps than A2C's preset (medians 84000 against 80000)."""

HELDOUT_NOTES = """\
* The claim "median final evaluation >= 475 in fewer environment steps than A2C's
  preset" does NOT hold on the held-out seeds: both presets evaluate at a median of 500,
  but ACER's step reaching a training return of 475 varies widely from seed to seed
  (26k to never within its 100k budget; seed 31's best 20-episode mean was 445) and
  its median is no lower than A2C's. On seeds 0-2 its median is lower (52k against
  66k), but seed 2 never reached 475 either (best 413, evaluation 500), and the first
  preset had done better there (66k, 36k, 42k): seeds 0-2 favour neither preset
  clearly, and held-out they do not favour ACER.
* Why the preset changed anyway: the first preset failed the evaluation target on
  seeds 20-23 (median eval 367.6); the committed one evaluated at >= 492.5 in all 12 runs
  made with it (seeds 0-2, 20-23, 30-32, 40-41). It is more robust, not faster.
* First preset (entropy 0, 128-128 layers, lr 7e-4, replay ratio 4), held-out checks
  made before the second tuning stage (same commands, `minipg train acer|a2c --env
  CartPole-v1 --seed S`): seeds 10, 11, 12: ACER eval 500.0, 488.7, 500.0, reached 475
  at 88k, never, 58k; A2C (200k) eval 500 x3, reached at 80k, 74k, 62k. Seeds 20-23:
  ACER eval 321.6, 318.7, 500.0, 413.6, reached never, never, 74k, never.
* Second tuning stage, seeds 20-23 only (then 40-41), 100k steps, `--set` on the first
  preset; eval / reached 475 per seed:
  replay ratio 8: 500 x4 / 80k, 90k, 100k, 100k;
  lr 1e-3: 500, 493.5, 500, 500 / 88k, 88k, 50k, 80k;
  lr 1e-3 + replay ratio 8: 500 x4 / 40k, 38k, 46k, 72k (seeds 40, 41: 500, 500 /
  76k, 38k) -- chosen, now the preset;
  lr 2e-3 + replay ratio 8: 500, 498.3, 500, 500 / 56k, never, 54k, 14k;
  lr 1e-3 + replay ratio 12: 500 x4 / 56k, 98k, 34k, 62k;
  lr 1e-3 + replay ratio 6: 500, 500, 500, 495.6 / 52k, 86k, 62k, 90k.
  18 tuning runs in this stage besides the lead's 12 (all one BLAS thread, `nice -n 10`,
  two at a time); with the 6 held-out runs and the 3 reruns of seeds 0-2 about 21
  core-minutes (sum of the runs' wall times, two cores).
* The tuning seeds overstated the gain: seeds 20-23 and 40-41 gave a median of 43k
  for the chosen preset, the held-out seeds 84k. Six tuning seeds per setting and
  steps-to-475 that vary by a factor of three within a setting are too few to tell
  settings 10-20k apart."""


STAGE3_INTRO = """\
Issue 18's CartPole-v1 claim missed on seeds 30-32 (below), so a third stage retuned
ACER's CartPole-v1 preset under this protocol, fixed before any of its runs:

* Measure: the first logged step at which the mean training return of the last 20
  episodes reaches 475, logged every 2000 steps for both algorithms (`log_every` is
  2000 in ACER's and A2C's configurations, and every candidate's and A2C's iteration
  divides 2000, so the rows fall on the same steps); a run that never reaches it counts
  as beyond every step; also the final deterministic evaluation (10 episodes).
* Budget: 150k steps for every ACER run. A2C's preset is kept unchanged (200k steps, its
  learning rate decayed linearly over them); it is also run with `total_steps=150000`
  (the decay then over 150k) so that both algorithms are seen at the same budget.
* Tuning seeds 20, 21, 22, 23 only. Candidates A-E were written before any was run;
  G and H after A-E had run (B was best, C, D and E slower than A), written here before
  they were run: both push B's direction, more updates per environment step, further.
  Choice: the lowest median step reaching 475 over the four seeds, ties by the worst
  seed. A itself was chosen on seeds 20-23 in the second stage, so its figures here
  are favoured by that choice.
* Then one confirmation on seeds 60, 61, 62 (used for nothing else): ACER's chosen
  preset and A2C's preset, reported whatever it says.
* Commands (each with `--out DIR`; here /tmp/acertune-runs): `nice -n 10 python
  verification/acer_learning.py tune` (one run at a time; `--only A B` for some
  candidates), `... confirm`, `... previous` (candidate A on seeds 60-62, run after the
  confirmation), `... run --only CartPole-v1 --force` (the first table's rows, rerun
  with the new preset), then `python verification/acer_learning.py report`. One BLAS
  thread, float64; CPU s is user + sys of the training processes, all seeds together.
* Not tried: a shared trunk for the policy and Q heads (the paper's network): minipg's
  ACER has separate policy and critic networks, and a shared one would change the
  average-policy network, the checkpoints and the cross-checks, too large for this
  stage's budget (about 35 core-minutes)."""

STAGE3_NOTES = """\
* The claim does NOT hold on the fresh seeds: ACER's chosen preset reached a training
  return of 475 at a median of 70k steps (104k, 14k, 70k), A2C's preset at 42k (50k,
  42k, 42k); A2C run with ACER's budget of 150k steps at 58k, also fewer. All nine runs
  evaluate at 500. It is the second confirmation in which ACER is no faster than A2C (seeds
  30-32: 84k against 80k, below).
* The choice of B was weakly supported: its median on seeds 20-23 (41k) is 2k below
  A's (43k) while a candidate's four seeds lie 26k to 66k apart; only the worst seed (54k
  against 72k) separated them. Candidate A run on seeds 60-62 after the confirmation
  (context only; the preset was not changed after it): 28k, 90k, 56k, median 56k, also
  slower than A2C there. On seeds 20-23 every candidate had medians of 41-76k, and
  both confirmations gave medians 56-84k for A and B: four tuning seeds with this
  spread mostly select noise, and the tuning seeds overstate the result each time.
* More replay per environment step did not help beyond B: four times A's updates per
  step, by shorter segments (G) or a doubled replay ratio (H), were slower and cost
  2.5-3 times the CPU; a larger replay batch (E) and a decaying learning rate (D) were
  slower; fresher on-policy updates at A's update rate (C) were slower.
* ACER's training curves are less monotone than A2C's: runs often reach 475 and fall
  back (seed 0 of the first table then reached 475 at 14k, then its 20-episode mean
  stayed near 90-170 for ~50k steps before recovering), so 'first step reaching 475'
  flatters it, and the spread between seeds is wide (14k to 104k on 60-62).
* With the third stage's preset, seeds 0-2 (rerun at 150k steps; the first table then,
  now the fourth stage's preset) evaluated at 500, 270.6 and 500 (median 500, target
  met); the second-stage preset had evaluated at 500 on those seeds. Seed 1's
  20-episode training mean was 500 at the end while its deterministic evaluation was
  270.6.
* Runs of this stage: `--out /tmp/acertune-runs` (a copy of the directory holding the
  earlier runs of the first table). CPU (user + sys, one BLAS thread, `nice -n 10`, one
  run at a time, machine load 2-8 from other sessions): tuning 28 runs 1340 s,
  confirmation 9 runs 190 s, candidate A on 60-62 89 s, the first table's CartPole-v1
  seeds 0-2 rerun about 130 s: about 29 core-minutes. Candidate A's runs on seeds 20-23
  repeated the second stage's runs of the same settings exactly (the same training
  returns at every logged step up to 100k).
* Not tried: a shared trunk for the policy and Q heads (see above); other values of
  c, delta or alpha in this stage (delta 0.1 and 5 were tried in the first)."""


STAGE4_POINTER = """\
## The fourth stage (verification/results/acer_stage4.md)

A fourth stage (`verification/acer_stage4.py`) tuned the replay's size and ratio, the
entropy bonus and the trust region on seeds 100-107 and changed the CartPole-v1 preset to a
5,000-step replay and 100k steps; its confirmation on fresh seeds 200-219 against A2C's
preset, with a test stated before its runs, is in that file. The first table above is
the current preset; the sections below are the earlier presets' history. Their commands
pin those presets' settings, except `run --only CartPole-v1 --force`: it reruns the
first table's rows with the current preset, so the third stage's runs of seeds 0-2 (at
150k steps) are gone from the run directory; their figures stay in the notes below."""


def cmd_report(args):
    import statistics
    runs, summary, reached = lr.preset_tables(PLAN, args.seeds, args.out)
    a2c_median = statistics.median(A2C_REACHED.values())
    acer_median = reached.get(("acer", "CartPole-v1"))
    budget = lr.read_json(lr.run_dir(args.out, "acer:CartPole-v1", args.seeds[0]),
                          "config.json")["config"]["total_steps"] if acer_median else None
    compare = ["## CartPole-v1: ACER against A2C's preset", "",
               *lr.table_head("algorithm", "budget (steps)", "steps reaching 475 (seeds "
                              "0, 1, 2)", "median"),
               f"| a2c (onpolicy_learning.md) | {A2C_BUDGET} | "
               f"{', '.join(str(v) for v in A2C_REACHED.values())} | {a2c_median:.0f} |"]
    if acer_median is not None:
        steps = []
        for seed in args.seeds:
            rows = lr.read_progress(lr.run_dir(args.out, "acer:CartPole-v1", seed))
            steps.append(str(lr.first_step_reaching(rows, 475.0) or "never"))
        verdict = "fewer" if acer_median < a2c_median else "NOT fewer"
        compare += [f"| acer | {budget} | {', '.join(steps)} | {acer_median:.0f} |", "",
                    f"ACER reaches a training return of 475 in {verdict} environment steps "
                    f"than A2C's preset (medians {acer_median:.0f} against "
                    f"{a2c_median:.0f}) on seeds 0-2, with a budget of {budget} steps "
                    f"against A2C's {A2C_BUDGET}; seeds 0-2 were among the first stage's tuning "
                    "seeds, so see the confirmation of the current preset on fresh seeds "
                    "200-219 (acer_stage4.md) and, for the earlier presets, the fresh "
                    "seeds below."]
    intro = ("Commands: `nice -n 10 python verification/acer_learning.py run` (one run at a "
             "time), then `python verification/acer_learning.py report`. "
             + lr.preset_method(args.seeds) + " Wall times are on the shared 2-core machine "
             "(other sessions' jobs running too): they are not speed measurements.")
    heldout = ["", "## Held-out seeds 30-32 (history)", "", HELDOUT_INTRO, "",
               HELDOUT_NOTES]
    candidates, chosen = tune_table(args.out)
    stage3 = (["", STAGE4_POINTER, "",
               "## Third tuning stage (seeds 20-23) and fresh seeds 60-62", "",
               STAGE3_INTRO, "", "### Candidates, seeds 20-23, 150k steps", ""] + candidates
              + ["", f"Chosen by the rule: {chosen or '(not run yet)'}.", "",
                 "### Fresh seeds 60, 61, 62 (run once, after the choice)", ""]
              + (confirm_table(args.out) or ["(not run yet)"]) + ["", STAGE3_NOTES])
    wide = (["", "## Ten more fresh seeds, 70-79 (both presets as they were then)", "",
             WIDE_INTRO,
             ""] + (wide_table(args.out) or ["(not run yet)"])
            + ["", "### Ten more fresh seeds, 80-89, and the decision on all 23 seeds", "",
               FINAL_INTRO, ""] + (pooled_table(args.out) or ["(not run yet)"]))
    lr.write_report(["# ACER: learning on four tasks", "", intro, ""] + runs
                    + ["", "## Against the targets", ""] + lr.summary_table(summary, True)
                    + [""] + compare + stage3 + wide + heldout + ["", NOTES],
                    lr.results_path("acer_learning.md"))


if __name__ == "__main__":
    lr.main(__doc__, {"run": cmd_run, "heldout": cmd_heldout, "tune": cmd_tune,
                      "confirm": cmd_confirm, "previous": cmd_previous, "wide": cmd_wide,
                      "final": cmd_final, "report": cmd_report},
            "tasks, e.g. CartPole-v1 (run), or candidates, e.g. A B (tune)",
            "/tmp/minipg-acer-runs")
