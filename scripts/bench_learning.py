"""Learning quality against published baselines and peers: `python scripts/bench_learning.py [--only NAME ...]`.

Races (`--only sac-pendulum ...`, see RACES): a command trained until its evaluation mean reaches a threshold, whole
process timed from its start, beside a peer run in the same call (Stable-Baselines3 with RL Zoo's settings, where
`--sb3-python` names a Python that has it; or another of our commands). Each row gives the env steps and seconds
to the threshold for every seed, and the ratios to the peer.

Budget runs:

Runs each tuned experiment as a user would (`python -m maze_jax.train +experiment=...`) for a budget of env steps,
then prints a table of its returns beside the published figures:

  minatar   `+experiment=minatar_ppo` on every MinAtar game gymnax has, at gymnax's budget of 10M steps (15 to 25
            minutes a game on 2 CPU cores). gymnax's PPO baselines report Breakout-MinAtar about 28 and
            Freeway-MinAtar about 58.
  impala-breakout   `+experiment=minatar_impala` on Breakout-MinAtar at the same budget, against the same 28.
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
    Benchmark("impala-breakout", ["+experiment=minatar_impala", "env.name=Breakout-MinAtar"], 16 * 16 * 128,
              10_000_000, 28.0, "gymnax PPO baseline"),
    Benchmark("ant", ["+experiment=brax_ant_ppo"], 2048 * 80 * 10, 50_000_000, None,
              "Brax PPO (figure not stored here)"),
]
# --cpu: batches a 2-core machine gets through (the experiment's rates, smaller batches)
CPU_OVERRIDES = {"ant": ["runner.concurrency=64", "algorithm.batch_size=160"]}
CPU_STEPS_PER_EPOCH = {"ant": 64 * 80 * 10}


class Race(NamedTuple):
    name: str
    overrides: list  # our command's overrides (it stops itself once solved, at `threshold`)
    threshold: float
    peer: list | None  # sb3_peer.py's arguments (algo, env), or ["ours", *overrides] for a command of our own
    note: str


SLOW_PENDULUM = ["env=gymnasium", "env.name=slow_env:MazeJaxBench/SlowPendulum-v1", "env.reward_threshold=-200"]
PENDULUM_PPO = ["env.name=Pendulum-v1", "algorithm=ppo", "runner.concurrency=64", "algorithm.n_rollout_steps=64",
                "algorithm.batch_size=1024", "algorithm.n_optimization_epochs=10", "algorithm.epoch_length=10",
                "algorithm.lr=0.002", "algorithm.gamma=0.9", "algorithm.gae_lambda=0.95", "algorithm.entropy_coef=0.0",
                "algorithm.max_grad_norm=0.5", "algorithm.rollout_evaluator.n_episodes=64"]  # the README's settings
RACES = [
    Race("sac-pendulum", ["+experiment=pendulum_sac"], -200, ["sac", "Pendulum-v1"],
         "gymnasium's Pendulum (a Python env) vs SB3 SAC, RL Zoo settings"),
    Race("sac-pendulum-jax", ["+experiment=pendulum_sac", "env.backend=gymnax"], -200, ["sac", "Pendulum-v1"],
         "gymnax's Pendulum, the buffer on the device, vs SB3 SAC on gymnasium's"),
    Race("sac-slow-pendulum", ["+experiment=pendulum_sac", *SLOW_PENDULUM], -200,
         ["ours", "env=gymnasium", *SLOW_PENDULUM, *PENDULUM_PPO[1:], "algorithm.n_epochs=40"],
         "Pendulum at 1 ms a step: SAC vs PPO with the README's Pendulum settings"),
    Race("sac-cartpole", ["+experiment=cartpole_sac"], 475, None, "discrete SAC on CartPole-v1 (gymnasium)"),
    Race("sac-lunarlander", ["+experiment=lunarlander_continuous_sac"], 200, None,
         "SAC on LunarLanderContinuous-v3 (gymnasium)"),
    Race("impala-cartpole", ["env=gymnasium", "env.name=CartPole-v1", "algorithm=impala", "algorithm.n_epochs=40"],
         475, None, "IMPALA on CartPole-v1, host collector (actors one update behind)"),
    Race("impala-cartpole-ray", ["env=gymnasium", "env.name=CartPole-v1", "algorithm=impala", "runner=ray",
                                 "runner.num_workers=2", "runner.envs_per_worker=4", "algorithm.n_epochs=40"],
         475, None, "IMPALA on CartPole-v1 with runner=ray"),
]
MAZE_PERFORMANCE = {  # Maze's own performance test: the best training mean over epochs reaches 180
    "maze-sac": ["-cn", "conf_train", "env=gym_env", "env.name=CartPole-v1", "algorithm=sac", "algorithm.n_epochs=30",
                 "model=vector_obs", "critic=template_state_action", "algorithm.rollout_evaluator.n_episodes=0"],
    "maze-impala": ["-cn", "conf_train", "env=gym_env", "env.name=CartPole-v1", "algorithm=impala",
                    "algorithm.n_epochs=5", "algorithm.rollout_evaluator.n_episodes=0"],
}


def timed_until(cmd: list, threshold: float, row: str = "eval", env: dict | None = None) -> tuple:
    """Runs `cmd` (ours), reading its table as it prints: (env steps, seconds since the start) at the first epoch
    whose `row` reward mean reaches `threshold`, or (None, seconds) when the run ends first."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=REPO, env=env)
    steps = None
    try:
        for line in proc.stdout:
            if "reward                total_step_count" in line:
                steps = int(float(line.rsplit("|", 1)[1].replace(",", "")))
            if f"|{row} " in line and "reward                mean  " in line:
                if float(line.rsplit("|", 1)[1].replace(",", "")) >= threshold:
                    return steps, time.perf_counter() - start
    finally:
        proc.kill()
        proc.wait()
    return None, time.perf_counter() - start


def ours(overrides: list, seed: int, log_dir: str, threshold: float) -> tuple:
    env = {**os.environ, "PYTHONPATH": os.path.dirname(os.path.abspath(__file__))}  # slow_env.py
    return timed_until([sys.executable, "-m", "maze_jax.train", *overrides, f"seeding.agent_base_seed={seed}",
                        f"seeding.env_base_seed={seed}", f"log_base_dir={log_dir}"], threshold, env=env)


def sb3(python: str, algo: str, env_id: str, threshold: float, seed: int) -> tuple:
    start = time.perf_counter()
    proc = subprocess.run([python, os.path.join(os.path.dirname(os.path.abspath(__file__)), "sb3_peer.py"), algo,
                           env_id, str(threshold), "--seed", str(seed)], capture_output=True, text=True)
    words = proc.stdout.split()
    if proc.returncode or "steps" not in words:
        return None, time.perf_counter() - start
    steps = words[words.index("steps") + 1]
    return (None if steps == "none" else int(steps)), time.perf_counter() - start


def race(race_: Race, seeds: list, sb3_python: str | None, log_dir: str) -> None:
    fmt = lambda r: f"{r[0]:,} steps, {r[1]:.1f} s" if r[0] else f"not reached ({r[1]:.0f} s)"  # noqa: E731
    for seed in seeds:
        mine = ours(race_.overrides, seed, log_dir, race_.threshold)
        if race_.peer and race_.peer[0] == "ours":
            peer = ours(race_.peer[1:], seed, log_dir, race_.threshold)
        elif race_.peer and sb3_python:
            peer = sb3(sb3_python, *race_.peer, race_.threshold, seed)
        else:
            peer = None
        ratio = f"{peer[1] / mine[1]:.1f}x faster, {mine[0] / peer[0]:.2f}x the steps" \
            if peer and mine[0] and peer[0] else "-"
        print(f"| {race_.name} | {seed} | {fmt(mine)} | {fmt(peer) if peer else '-'} | {ratio} | {race_.note} |",
              flush=True)


def maze_performance(name: str, seeds: list, log_dir: str) -> None:
    for seed in seeds:
        cmd = [sys.executable, "-m", "maze_jax.train", *MAZE_PERFORMANCE[name], f"seeding.agent_base_seed={seed}",
               f"seeding.env_base_seed={seed}", "runner.stop_when_solved=false", f"log_base_dir={log_dir}"]
        start = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
        best = max(Run(proc.stdout, 0).rows("train", "mean") or [math.nan])
        print(f"| {name} | {seed} | best training mean {best:.1f} (Maze's test asks for 180) | "
              f"{time.perf_counter() - start:.0f} s |", flush=True)


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
    parser.add_argument("--only", nargs="*", default=[b.name for b in BENCHMARKS if "MinAtar" in b.name],
                        help="benchmarks to run (default: the MinAtar games)")
    parser.add_argument("--steps", type=float, default=None, help="env steps per benchmark (default: published)")
    parser.add_argument("--cpu", action="store_true", help="smaller batches where the experiment's need a GPU")
    parser.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2], help="seeds of the races")
    parser.add_argument("--sb3-python", default=None, help="a Python with stable-baselines3 for the peer lines")
    args = parser.parse_args()
    names = [b.name for b in BENCHMARKS] + [r.name for r in RACES] + list(MAZE_PERFORMANCE)
    if set(args.only) - set(names):
        raise SystemExit(f"--only: pick from {', '.join(names)}")
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    races = [r for r in RACES if r.name in args.only]
    if races:
        print("| race | seed | maze_jax: to the threshold | peer | ratio | what |")
        print("| --- | ---: | ---: | ---: | ---: | --- |")
        with tempfile.TemporaryDirectory() as log_dir:
            for race_ in races:
                race(race_, args.seeds, args.sb3_python, log_dir)
    with tempfile.TemporaryDirectory() as log_dir:
        for name in [n for n in MAZE_PERFORMANCE if n in args.only]:
            maze_performance(name, args.seeds, log_dir)
    chosen = [b for b in BENCHMARKS if b.name in args.only]
    if not chosen:
        return
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
