"""Speed measurements a user can re-run: `python scripts/bench.py [--quick]`.

1. Time to solve: the default `python -m maze_jax.train env=cartpole algorithm=es`, whole process from start to
   exit, with an empty compilation cache (first run) and with the cache it filled (repeat run).
2. ES throughput: env steps per second of the compiled epoch (compile time reported apart) for several
   population sizes with a 32x32 network on CartPole-v1.
Targets (issue 2, 2-core CPU): solve in < 10 s; >= 2,000,000 steps/s at population 128.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
import tempfile
import time

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, REPO)  # runs from a checkout without installing too


def time_to_solve(seed: int, cache_dir: str, log_dir: str) -> tuple[float, str]:
    cmd = [sys.executable, "-m", "maze_jax.train", "env=cartpole", "algorithm=es", f"seeding.agent_base_seed={seed}",
           f"seeding.env_base_seed={seed}", f"compilation_cache_dir={cache_dir}", f"log_base_dir={log_dir}"]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(proc.stderr)
    solved = "reached the reward threshold" in proc.stdout
    epochs = len(re.findall(r"\*\*\*\*\*\*\*\*\*\* Iteration", proc.stdout))
    compiled = re.search(r"Compiled in ([\d.]+) s", proc.stdout).group(1)
    return seconds, f"{'solved' if solved else 'NOT solved'} in {epochs} epochs, compile {compiled} s"


def es_throughput(population: int, hidden: str, repeats: int) -> tuple[float, float]:
    import jax

    from maze_jax.algorithms import build_trainer
    from maze_jax.envs import make_gymnax
    from maze_jax.session import compose_config

    cfg, _ = compose_config([f"algorithm.n_rollouts_per_update={population}", f"model.hidden_units={hidden}"])
    trainer = build_trainer("es", cfg, make_gymnax("CartPole-v1"))
    state = jax.jit(trainer.init)(jax.random.key(0))
    start = time.perf_counter()
    epoch = jax.jit(trainer.train_epoch).lower(state).compile()
    compile_s = time.perf_counter() - start
    state, metrics = epoch(state)
    jax.block_until_ready(metrics)
    start = time.perf_counter()
    for _ in range(repeats):
        state, metrics = epoch(state)
    jax.block_until_ready(metrics)
    seconds = (time.perf_counter() - start) / repeats
    return float(metrics["train_BaseEnvEvents/reward/step_count"]) / seconds, compile_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one seed, fewer population sizes")
    parser.add_argument("--populations", default="16,128,1024,4096")
    args = parser.parse_args()
    from maze_jax.xla_flags import apply_defaults

    apply_defaults()  # the CLI's XLA flags, so in-process figures match it
    import jax

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"jax {jax.__version__} on {jax.devices()[0].platform}")
    print("\n== time to solve CartPole-v1, default command, whole process ==")
    seeds = [0] if args.quick else [0, 1, 2]
    with tempfile.TemporaryDirectory() as tmp:
        for seed in seeds:
            cache = os.path.join(tmp, f"cache{seed}")
            cold, info_cold = time_to_solve(seed, cache, tmp)
            warm, info_warm = time_to_solve(seed, cache, tmp)
            print(f"seed {seed}: first run {cold:5.2f} s ({info_cold}); repeat {warm:5.2f} s ({info_warm})")
    print("\n== ES epoch throughput, CartPole-v1, 32x32 network, 500 steps per member ==")
    populations = [128] if args.quick else [int(p) for p in args.populations.split(",")]
    for population in populations:
        rate, compile_s = es_throughput(population, "[32,32]", repeats=5)
        print(f"population {population:5d}: {rate / 1e6:6.2f} M env steps/s (compile {compile_s:.2f} s)")


if __name__ == "__main__":
    main()
