"""Learning evidence for issue 15: TRPO with its presets on four tasks.

Each task is trained with TRPO's preset (no other setting) for 3 seeds through
the same run loop `minipg train` uses, and the final deterministic evaluation
(10 episodes) is recorded.  Targets (median over seeds of that final
evaluation return):

    CartPole-v1          >= 475   within 100k steps (rl-zoo's TRPO: 500 at 100k)
    Acrobot-v1           >= -100                    (preset: 100k)
    Pendulum-v1          >= -250                    (preset: see the table)
    InvertedPendulum-v5  >= 950   (needs the optional `mujoco` package; preset: 100k)

Two steps: `run` trains (sequentially; several `run --only ...` processes may
share the work) and leaves run directories under --out (default
/tmp/minipg-trpo-runs, outside the work tree); `report` reads them and writes
verification/results/trpo_learning.md.

    python verification/trpo_learning.py run [--only CartPole-v1 ...] [--seeds 0 1 2]
    python verification/trpo_learning.py report
"""

import learning_runs as lr

lr.one_blas_thread()

# (algorithm, task, target); the step budget is the preset's total_steps
PLAN = [("trpo", "CartPole-v1", 475.0), ("trpo", "Acrobot-v1", -100.0),
        ("trpo", "Pendulum-v1", -250.0), ("trpo", "InvertedPendulum-v5", 950.0)]


def cmd_run(args):
    selected = [("trpo", e) for e in args.only] if args.only else [(a, e) for a, e, _ in PLAN]
    lr.run_presets(selected, args.seeds, args.out, args.force)


NOTES = """\
Notes.
* The presets were written before these runs and not tuned on them (rl-baselines3-zoo's TRPO
  settings; for Pendulum-v1 without gSDE, which minipg does not have; for
  InvertedPendulum-v5 the zoo's MuJoCo TRPO settings). The only earlier run was a 20k-step
  CartPole smoke run.
* CartPole-v1 seed 1 misses on its own: its training return reached 475 at 52k steps and 500 near 58k,
  stayed there to ~80k, then fell (the trust region bounds the KL of each step, not the
  return) and the final evaluation was 122; the median (500) meets the target.
* InvertedPendulum-v5 needs the optional `mujoco` package: `pip install -e '.[mujoco]'`
  installed mujoco 4.0.1 (with imageio) here without trouble.
* Two runs at a time on the 2-core machine while other sessions' runs were using it too
  (load average 2-7): the wall times are not speed measurements (see trpo_speed.md)."""


def cmd_report(args):
    intro = ("Commands: `python verification/trpo_learning.py run` (split over two processes "
             "running at the same time, `run --only TASK ...`), then "
             "`python verification/trpo_learning.py report`. " + lr.preset_method(args.seeds)
             + " Wall times are on the 2-core machine, two runs at a time.")
    lr.preset_report(args, "# TRPO: learning on four tasks", intro, PLAN, NOTES,
                     "trpo_learning.md")


if __name__ == "__main__":
    lr.main(__doc__, {"run": cmd_run, "report": cmd_report}, "tasks, e.g. CartPole-v1",
            "/tmp/minipg-trpo-runs")
