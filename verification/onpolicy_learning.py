"""Learning evidence for issue 4: A2C and PPO with their presets on the default tasks.

Each (algorithm, task) is trained with its preset (no other setting) for 3
seeds through the same run loop `minipg train` uses, and the final
deterministic evaluation (10 episodes) is recorded.  Targets (median over
seeds of that final evaluation return):

    PPO  CartPole-v1          >= 475   within 100k steps (preset: 100k)
    A2C  CartPole-v1          >= 475   within 500k steps (preset: 200k)
    PPO  Acrobot-v1           >= -100                    (preset: 200k)
    A2C  Acrobot-v1           >= -100                    (preset: 300k)
    PPO  Pendulum-v1          >= -250                    (preset: 150k)
    PPO  InvertedPendulum-v5  >= 950   (needs the optional `mujoco` package; preset: 100k)

Runs are long, so the script has two steps: `run` trains (sequentially; several
`run --only ...` processes may share the work) and leaves run directories under
--out (default /tmp/minipg-onpolicy-runs, outside the work tree);
`report` reads them and writes verification/results/onpolicy_learning.md.

    python verification/onpolicy_learning.py run [--only ppo:CartPole-v1 ...] [--seeds 0 1 2]
    python verification/onpolicy_learning.py report
"""

import learning_runs as lr

lr.one_blas_thread()

# (algorithm, task, target); the step budget is the preset's total_steps
PLAN = [("ppo", "CartPole-v1", 475.0), ("a2c", "CartPole-v1", 475.0),
        ("ppo", "Acrobot-v1", -100.0), ("a2c", "Acrobot-v1", -100.0),
        ("ppo", "Pendulum-v1", -250.0), ("ppo", "InvertedPendulum-v5", 950.0)]


def cmd_run(args):
    selected = [tuple(x.split(":")) for x in args.only] if args.only else \
        [(a, e) for a, e, _ in PLAN]
    lr.run_presets(selected, args.seeds, args.out, args.force)


NOTES = """\
Notes.
* Presets were fixed before these runs, from trials (not in the table) on the same
  seeds: PPO Pendulum-v1 with 300k steps stalled near -470 (seed 0), with 150k the
  training return reached about -190 (seed 0) and the final evaluation -214 (seed 1),
  so the preset is 150k (the learning rate anneals to 0 faster); A2C without reward
  scaling failed on 2 of 3 CartPole seeds (final 69 and 255, 200k steps) and on 1 of 3
  Acrobot seeds (-500, 500k steps), so both A2C presets scale rewards (gymnasium's
  NormalizeReward): value and policy share one global-norm gradient clip, and unscaled
  returns let the value gradient take the whole clip budget; InvertedPendulum-v5 went
  from 300k to 100k steps after a trial's training return averaged 840 at 32k.
* PPO Pendulum-v1 seed 2 misses on its own (-527: it never learned to swing up within
  150k steps; -570 with the engine before 2026-12-04); the median meets the target.
* InvertedPendulum-v5 needs the optional `mujoco` package (here mujoco 4.0.0 with
  imageio, installed with pip); its state lives in MuJoCo's C structures, so a resumed
  run of it is not bit-exact (the Collector says so), unlike the classic-control tasks.
* This table was produced with the engine of 2026-12-04 (commit 851ff54: fused dense
  activations, numba log-softmax and sampling), two runs at a time on the 2-core
  machine with nothing else running; the earlier table (engine of commit c10e4ee, the
  machine heavily loaded) met the same targets with medians 500, 500, -79.7, -79.0,
  -213.6 and 1000.  Wall times are of two runs sharing the machine, not speed
  measurements (see ppo_speed.md for those)."""


def cmd_report(args):
    intro = ("Commands: `python verification/onpolicy_learning.py run` (here split over two "
             "processes running at the same time: `run --only ppo:CartPole-v1 a2c:CartPole-v1 "
             "ppo:Pendulum-v1` and `run --only ppo:Acrobot-v1 a2c:Acrobot-v1 "
             "ppo:InvertedPendulum-v5`), then "
             "`python verification/onpolicy_learning.py report`. " + lr.preset_method(args.seeds)
             + " Wall times are on the 2-core machine, two runs at a time.")
    lr.preset_report(args, "# On-policy algorithms (A2C, PPO): learning on the default tasks",
                     intro, PLAN, NOTES, "onpolicy_learning.md")


if __name__ == "__main__":
    lr.main(__doc__, {"run": cmd_run, "report": cmd_report},
            "algo:task pairs, e.g. ppo:CartPole-v1", "/tmp/minipg-onpolicy-runs")
