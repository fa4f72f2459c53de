"""Speed of A3C (issue 17): workers, backends, and wall time to a solved CartPole.

Three measurements, each alternating its contenders repeat by repeat in this one
process (the 2-core machine is shared with other sessions' work, so only ratios
measured side by side mean something; medians over the repeats are reported):

1. environment steps per second with 1 and 2 worker processes (process backend),
   CartPole-v1 preset otherwise; goal: 2 workers >= 1.7x one;
2. the Ray backend (Ray actors, a parameter-server actor, a local Ray instance) against
   the process backend, 2 workers each; goal: Ray >= 0.75x;
3. wall time until the training return (mean of the last 20 episodes) first reaches 475
   on CartPole-v1: A3C with its preset and default workers against minipg's A2C with its
   preset (`minipg train a2c --env CartPole-v1`), 3 seeds each.

Throughput is the steady state: steps between the first and the last progress row over
the wall time between them (so the start of the worker processes and of Ray, a few
seconds, is left out and reported apart).  Everything float64, one BLAS thread a process.

    nice -n 10 python verification/a3c_speed.py [--repeats 3] [--steps 12000]

writes verification/results/a3c_speed.md.
"""

import argparse
import csv
import io
import os
import signal
import statistics
import sys
import tempfile
import time

import learning_runs as lr

lr.one_blas_thread()


def steady_rate(out):
    """(steps per second between the first and the last progress row, seconds to the
    first row) of the run in ``out``."""
    with open(os.path.join(out, "progress.csv")) as fh:
        rows = list(csv.DictReader(fh))
    first, last = rows[0], rows[-1]
    steps = int(last["step"]) - int(first["step"])
    wall = float(last["wall_s"]) - float(first["wall_s"])
    return steps / wall, float(first["wall_s"])


def throughput(tmp, tag, steps, overrides):
    from minipg.run import train
    out = os.path.join(tmp, tag)
    settings = {"log_every": 1000, "anneal_lr": False}
    settings.update(overrides)
    train("a3c", "CartPole-v1", total_steps=steps, seed=0, out=out, force=True,
          overrides=settings, stream=io.StringIO())
    return steady_rate(out)


def time_to_target(algo, seed, tmp, target=475.0):
    """Wall seconds from the start of ``train`` until the mean training return of the last
    20 episodes reaches ``target`` (checked after every learn call; the run is then
    stopped with a SIGINT to this process, as Ctrl-C would), and the step count then."""
    import minipg.algorithms as algorithms
    from minipg.run import train
    cls = algorithms.get(algo)
    original, reached = cls.learn, {}
    start = time.perf_counter()

    def learn(self, collector):
        metrics = original(self, collector)
        returns = list(collector.recent_returns)
        if not reached and len(returns) >= 20 and sum(returns) / len(returns) >= target:
            reached.update(wall=time.perf_counter() - start, steps=collector.steps)
            os.kill(os.getpid(), signal.SIGINT)
        return metrics

    cls.learn = learn
    try:
        train(algo, "CartPole-v1", seed=seed, out=os.path.join(tmp, f"{algo}-{seed}"),
              force=True, stream=io.StringIO())
    finally:
        cls.learn = original
    return reached.get("wall", float("inf")), reached.get("steps")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--steps", type=int, default=12_000, help="steps of a throughput run")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--skip", nargs="*", default=[], choices=["workers", "ray", "target"])
    args = p.parse_args()
    import numpy as np
    import ray
    lines = ["# A3C: speed", "",
             f"Command: `nice -n 10 python verification/a3c_speed.py --repeats {args.repeats} "
             f"--steps {args.steps}`. Machine: {os.cpu_count()} cores, shared with other "
             f"sessions' work (load average at the start: {os.getloadavg()[0]:.1f}). "
             f"float64, one BLAS thread a process, NumPy {np.__version__}, Ray {ray.__version__}, "
             f"Python {sys.version.split()[0]}. The contenders alternate repeat by repeat; "
             "medians over the repeats.", ""]
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        if "workers" not in args.skip:
            rates = {1: [], 2: []}
            starts = {1: [], 2: []}
            for r in range(args.repeats):
                for n in (1, 2):
                    rate, first = throughput(tmp, f"w{n}-{r}", args.steps, {"workers": n})
                    rates[n].append(rate)
                    starts[n].append(first)
                    print(f"workers={n} repeat {r}: {rate:.0f} steps/s", flush=True)
            m1, m2 = statistics.median(rates[1]), statistics.median(rates[2])
            results["workers"] = m2 / m1
            lines += ["## 1 and 2 workers (process backend)", "",
                      "| workers | steps/s per repeat | median | first progress row at (s) |",
                      "|---|---|---|---|"]
            for n, m in ((1, m1), (2, m2)):
                lines.append(f"| {n} | {', '.join(f'{x:.0f}' for x in rates[n])} | {m:.0f} | "
                             f"{', '.join(f'{x:.1f}' for x in starts[n])} |")
            lines += ["", f"Ratio 2 workers / 1 worker: **{m2 / m1:.2f}x** (goal >= 1.7x: "
                      f"{'met' if m2 / m1 >= 1.7 else 'MISSED'}); per repeat: "
                      f"{', '.join(f'{b / a:.2f}' for a, b in zip(rates[1], rates[2]))}.", ""]
        if "ray" not in args.skip:
            rates = {"process": [], "ray": []}
            starts = {"process": [], "ray": []}
            for r in range(args.repeats):
                for backend in ("process", "ray"):
                    rate, first = throughput(tmp, f"{backend}-{r}", args.steps,
                                             {"workers": 2, "backend": backend})
                    rates[backend].append(rate)
                    starts[backend].append(first)
                    print(f"backend={backend} repeat {r}: {rate:.0f} steps/s", flush=True)
            mp, mr = statistics.median(rates["process"]), statistics.median(rates["ray"])
            results["ray"] = mr / mp
            lines += ["## Ray backend against the process backend (2 workers, this machine)",
                      "", "| backend | steps/s per repeat | median | first progress row at (s) |",
                      "|---|---|---|---|"]
            for b, m in (("process", mp), ("ray", mr)):
                lines.append(f"| {b} | {', '.join(f'{x:.0f}' for x in rates[b])} | {m:.0f} | "
                             f"{', '.join(f'{x:.1f}' for x in starts[b])} |")
            lines += ["", f"Ratio Ray / process: **{mr / mp:.2f}** (goal >= 0.75: "
                      f"{'met' if mr / mp >= 0.75 else 'MISSED'}); per repeat: "
                      f"{', '.join(f'{b / a:.2f}' for a, b in zip(rates['process'], rates['ray']))}"
                      ". The first-row time includes starting a local Ray instance.", ""]
        if "target" not in args.skip:
            walls = {"a3c": [], "a2c": []}
            steps = {"a3c": [], "a2c": []}
            for seed in args.seeds:
                for algo in ("a3c", "a2c"):
                    wall, n = time_to_target(algo, seed, tmp)
                    walls[algo].append(wall)
                    steps[algo].append(n)
                    print(f"{algo} seed {seed}: 475 after {wall:.1f} s, {n} steps", flush=True)
            ma, mb = statistics.median(walls["a3c"]), statistics.median(walls["a2c"])
            results["target"] = mb / ma
            lines += ["## Wall time to a training return of 475 on CartPole-v1", "",
                      "Each algorithm's preset (`minipg train a3c --env CartPole-v1`: 2 "
                      "workers here; `minipg train a2c --env CartPole-v1`: 8 environments in "
                      "one process), stopped once the mean training return of the last 20 "
                      "episodes reaches 475.", "",
                      "| algorithm | seeds | wall s per seed | steps per seed | median wall s |",
                      "|---|---|---|---|---|"]
            for algo, m in (("a3c", ma), ("a2c", mb)):
                lines.append(f"| {algo} | {args.seeds} | "
                             f"{', '.join(f'{x:.1f}' for x in walls[algo])} | "
                             f"{', '.join(str(x) for x in steps[algo])} | {m:.1f} |")
            lines += ["", f"A2C's median wall time over A3C's: **{mb / ma:.2f}x**.", ""]
    lines += [SCALING]
    path = lr.results_path("a3c_speed.md")
    lr.write_report(lines, path)


SCALING = """\
## How the design scales to many machines

On one machine the workers share the global parameters and the RMSprop statistics through
shared memory: an update is a Hogwild write of the parameter vector in place and nothing is
copied but the worker's own snapshot at its next synchronisation. Across machines
(`backend=ray`, `ray_address=HEAD:PORT`) the global state is held by one parameter-server
actor, and per segment (at most `t_max` = 5 environment steps of one worker) one round trip
crosses the network: the worker sends its accumulated gradient (one float64 vector of the
networks' size, 8 bytes x P: P = 9,155 parameters for CartPole's two 64-64 networks, 73 kB)
and receives the new parameter vector (the same 73 kB) and T. So the traffic is 2 x 8 P bytes
per t_max steps per worker, and the server applies the updates one at a time: with W workers
stepping at s steps/s each, it must absorb W s / t_max updates per second (each an RMSprop
pass over P numbers, tens of microseconds for P ~ 10^4) and move 16 P W s / t_max bytes per
second: for CartPole's networks at 2,000 steps/s a worker, 0.6 GB/s with W = 10 workers and
6 GB/s with W = 100 (40,000 updates/s at the server). Past a few dozen workers the single server's network link and update loop become the bottleneck,
which is where the paper's design (one machine, many threads) stops; the standard remedies,
not implemented here, are a larger t_max (fewer, larger updates), sending float32 gradients,
sharding the parameter vector over several server actors, or A2C's synchronous batching.
The episode statistics and each worker's state travel to the driver only at progress rows
(every `log_every` steps), a few kB per worker."""


if __name__ == "__main__":
    main()
