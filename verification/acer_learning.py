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
ACER's and A2C's CartPole-v1 presets on seeds 30, 31, 32, used for nothing else, and
`report` adds that comparison where those runs exist.

Steps: `run` and `heldout` train (sequentially, one run at a time) and leave run
directories under --out (default /tmp/minipg-acer-runs, outside the work tree); `report`
reads them and writes verification/results/acer_learning.md.

    nice -n 10 python verification/acer_learning.py run [--only CartPole-v1 ...] [--seeds 0 1 2]
    nice -n 10 python verification/acer_learning.py heldout
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


# fresh seeds for the one confirmation of the CartPole-v1 comparison (no tuning on them)
HELDOUT_SEEDS = [30, 31, 32]
HELDOUT_PLAN = [("acer", "CartPole-v1"), ("a2c", "CartPole-v1")]


def cmd_run(args):
    selected = [("acer", e) for e in args.only] if args.only else [(a, e) for a, e, _ in PLAN]
    lr.run_presets(selected, args.seeds, args.out, args.force)


def cmd_heldout(args):
    lr.run_presets(HELDOUT_PLAN, HELDOUT_SEEDS, args.out, args.force)


def heldout_table(out_root):
    """The held-out comparison's lines (empty where its runs are missing): a row an
    algorithm with each seed's final evaluation and first step reaching 475, and the
    median step, a run that never reached 475 counting as beyond every step."""
    import math
    import statistics
    lines = lr.table_head("algorithm", "budget (steps)",
                          *(f"seed {s}: eval / reached 475" for s in HELDOUT_SEEDS),
                          "median eval", "median step reaching 475")
    medians = {}
    for algo, env_id in HELDOUT_PLAN:
        cells, evals, steps = [], [], []
        for seed in HELDOUT_SEEDS:
            out = lr.run_dir(out_root, f"{algo}:{env_id}", seed)
            if not lr.finished(out):
                return []
            ev = lr.read_json(out, "eval.json")["return_mean"]
            step = lr.first_step_reaching(lr.read_progress(out), 475.0)
            evals.append(ev)
            steps.append(math.inf if step is None else step)
            cells.append(f"{ev:.1f} / {step or 'never'}")
        budget = lr.read_json(out, "config.json")["config"]["total_steps"]
        medians[algo] = statistics.median(steps)
        med = "never" if math.isinf(medians[algo]) else f"{medians[algo]:.0f}"
        lines.append(f"| {algo} | {budget} | {' | '.join(cells)} | "
                     f"{statistics.median(evals):.1f} | {med} |")
    verdict = "does" if medians["acer"] < medians["a2c"] else "does NOT"
    return lines + ["", f"On the held-out seeds ACER's preset {verdict} reach a training "
                        f"return of 475 in fewer environment steps than A2C's preset "
                        f"(medians {medians['acer']:.0f} against {medians['a2c']:.0f})."]


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
  replay ratio 8 (section "Held-out seeds"), and the CartPole-v1 rows above were rerun
  with that preset. Acrobot-v1 got the same
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
The comparison above uses seeds 0-2, which the first preset was tuned on. Below, the
CartPole-v1 presets of ACER (as committed) and A2C, each run once on seeds 30, 31, 32,
which no tuning run used. They were made as `minipg train acer|a2c --env CartPole-v1
--seed S`, one BLAS thread, two at a time; the `heldout` command runs the same through
the same run loop. Columns as above."""

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
                    f"{a2c_median:.0f}) on seeds 0-2, with half A2C's budget ({budget} "
                    f"against {A2C_BUDGET}); seeds 0-2 were among the tuning seeds, so "
                    "see the held-out seeds below."]
    intro = ("Commands: `nice -n 10 python verification/acer_learning.py run` (one run at a "
             "time), then `python verification/acer_learning.py report`. "
             + lr.preset_method(args.seeds) + " Wall times are on the shared 2-core machine "
             "(other sessions' jobs running too): they are not speed measurements.")
    heldout = heldout_table(args.out)
    if heldout:
        heldout = ["", "## Held-out seeds", "", HELDOUT_INTRO, ""] + heldout + ["",
                                                                             HELDOUT_NOTES]
    lr.write_report(["# ACER: learning on four tasks", "", intro, ""] + runs
                    + ["", "## Against the targets", ""] + lr.summary_table(summary, True)
                    + [""] + compare + heldout + ["", NOTES],
                    lr.results_path("acer_learning.md"))


if __name__ == "__main__":
    lr.main(__doc__, {"run": cmd_run, "heldout": cmd_heldout, "report": cmd_report}, "tasks, e.g. CartPole-v1",
            "/tmp/minipg-acer-runs")
