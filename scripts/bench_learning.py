"""Learning quality against published baselines: `python scripts/bench_learning.py [--only NAME ...] [--steps N]`.

Runs each tuned experiment as a user would (`python -m maze_jax.train +experiment=...`) for a budget of env steps,
then prints a table of its returns beside the published figures:

  minatar   `+experiment=minatar_ppo` on every MinAtar game gymnax has, at gymnax's budget of 10M steps (15 to 25
            minutes a game on 2 CPU cores). gymnax's PPO baselines report Breakout-MinAtar about 28 and
            Freeway-MinAtar about 58.
  ant       `+experiment=brax_ant_ppo` (needs the brax extra). Brax's budget, 50M steps of 2048 envs, needs a GPU;
            on a CPU pass a budget with --steps and smaller batches with --cpu.

Each row gives the budget actually run, the mean return of the last epoch's training episodes (the sampling policy,
as baselines usually report), the best and final evaluation means, and the wall time including compilation.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from typing import NamedTuple

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from readme_claims import Run  # noqa: E402  (reads the run's table)


class Benchmark(NamedTuple):
    name: str
    overrides: list
    steps_per_epoch: int  # env steps one epoch of the experiment takes (envs x rollout steps x updates)
    budget: int  # the published budget in env steps
    published: float | None  # the published return at that budget (None: no figure we can cite)
    source: str


MINATAR_EPOCH = 64 * 128 * 20
BENCHMARKS = [
    Benchmark("Breakout-MinAtar", ["+experiment=minatar_ppo", "env.name=Breakout-MinAtar"], MINATAR_EPOCH,
              10_000_000, 28.0, "gymnax PPO baseline"),
    Benchmark("Freeway-MinAtar", ["+experiment=minatar_ppo", "env.name=Freeway-MinAtar"], MINATAR_EPOCH,
              10_000_000, 58.0, "gymnax PPO baseline"),
    Benchmark("Asterix-MinAtar", ["+experiment=minatar_ppo", "env.name=Asterix-MinAtar"], MINATAR_EPOCH,
              10_000_000, None, "gymnax PPO baseline (no figure published)"),
    Benchmark("Seaquest-MinAtar", ["+experiment=minatar_ppo", "env.name=Seaquest-MinAtar"], MINATAR_EPOCH,
              10_000_000, None, "gymnax PPO baseline (no figure published)"),
    Benchmark("SpaceInvaders-MinAtar", ["+experiment=minatar_ppo", "env.name=SpaceInvaders-MinAtar"], MINATAR_EPOCH,
              10_000_000, None, "gymnax PPO baseline (no figure published)"),
    Benchmark("ant", ["+experiment=brax_ant_ppo"], 2048 * 80 * 10, 50_000_000, None,
              "Brax PPO (figure not stored here)"),
]
# --cpu: batches a 2-core machine gets through (the experiment's rates, smaller batches)
CPU_OVERRIDES = {"ant": ["runner.concurrency=64", "algorithm.batch_size=160"]}
CPU_STEPS_PER_EPOCH = {"ant": 64 * 80 * 10}


def run(benchmark: Benchmark, steps: int | None, cpu: bool, log_dir: str) -> dict:
    """Trains one benchmark for `steps` env steps (default: its published budget), rounded up to whole epochs."""
    per_epoch = CPU_STEPS_PER_EPOCH.get(benchmark.name, benchmark.steps_per_epoch) if cpu else benchmark.steps_per_epoch
    epochs = max(1, math.ceil((steps or benchmark.budget) / per_epoch))
    extra = CPU_OVERRIDES.get(benchmark.name, []) if cpu else []
    cmd = [sys.executable, "-m", "maze_jax.train", *benchmark.overrides, *extra, f"algorithm.n_epochs={epochs}",
           f"log_base_dir={log_dir}"]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or ["failed"])[-1], "seconds": seconds, "steps": 0}
    train, evals, final = (Run(proc.stdout, seconds).rows(p, "mean") for p in ("train", "eval", "final"))
    return {"steps": epochs * per_epoch, "train": train[-1] if train else math.nan,
            "best_eval": max(evals) if evals else math.nan, "final": final[-1] if final else math.nan,
            "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="*", default=[b.name for b in BENCHMARKS if b.name != "ant"],
                        help="benchmarks to run (default: the MinAtar games)")
    parser.add_argument("--steps", type=float, default=None, help="env steps per benchmark (default: published)")
    parser.add_argument("--cpu", action="store_true", help="smaller batches where the experiment's need a GPU")
    args = parser.parse_args()
    chosen = [b for b in BENCHMARKS if b.name in args.only]
    if not chosen:
        raise SystemExit(f"--only: pick from {', '.join(b.name for b in BENCHMARKS)}")
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print("| env | steps run | train return (last epoch) | best eval | final eval | published | at steps | time |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    with tempfile.TemporaryDirectory() as log_dir:
        for benchmark in chosen:
            result = run(benchmark, int(args.steps) if args.steps else None, args.cpu, log_dir)
            published = "-" if benchmark.published is None else f"{benchmark.published:g} ({benchmark.source})"
            if "error" in result:
                print(f"| {benchmark.name} | failed: {result['error']} | | | | {published} | | "
                      f"{result['seconds']:.0f} s |", flush=True)
                continue
            print(f"| {benchmark.name} | {result['steps']:,} | {result['train']:.2f} | {result['best_eval']:.2f} | "
                  f"{result['final']:.2f} | {published} | {benchmark.budget:,} | {result['seconds']:.0f} s |",
                  flush=True)


if __name__ == "__main__":
    main()
