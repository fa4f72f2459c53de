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

Two steps: `run` trains (sequentially, one run at a time) and leaves run directories
under --out (default /tmp/minipg-acer-runs, outside the work tree); `report` reads them
and writes verification/results/acer_learning.md.

    nice -n 10 python verification/acer_learning.py run [--only CartPole-v1 ...] [--seeds 0 1 2]
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


def cmd_run(args):
    selected = [("acer", e) for e in args.only] if args.only else [(a, e) for a, e, _ in PLAN]
    lr.run_presets(selected, args.seeds, args.out, args.force)


NOTES = """\
Notes.
* (filled in after the runs)"""


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
                    f"ACER's median step reaching 475 is {verdict} than A2C's "
                    f"({acer_median:.0f} against {a2c_median:.0f})."]
    intro = ("Commands: `nice -n 10 python verification/acer_learning.py run` (one run at a "
             "time), then `python verification/acer_learning.py report`. "
             + lr.preset_method(args.seeds) + " Wall times are on the shared 2-core machine "
             "(other sessions' jobs running too): they are not speed measurements.")
    lr.write_report(["# ACER: learning on four tasks", "", intro, ""] + runs
                    + ["", "## Against the targets", ""] + lr.summary_table(summary, True)
                    + [""] + compare + ["", NOTES], lr.results_path("acer_learning.md"))


if __name__ == "__main__":
    lr.main(__doc__, {"run": cmd_run, "report": cmd_report}, "tasks, e.g. CartPole-v1",
            "/tmp/minipg-acer-runs")
