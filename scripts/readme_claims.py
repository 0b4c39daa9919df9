"""Runs every command whose result the README claims, and checks the claim: `python scripts/readme_claims.py`.

Each claim names the README sentence it backs (a test checks that the sentence is still in the README, so the text
cannot change without this list) and a check of the command's output. Exits non-zero when a claim fails. On a
2-core CPU the whole run takes about 15 minutes; `--only NAME ...` picks claims.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from typing import Callable, NamedTuple

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import CUTTING, PENDULUM  # noqa: E402  (the commands the README and the benchmarks share)


class Run(NamedTuple):
    stdout: str
    seconds: float

    def rows(self, prefix: str, statistic: str) -> list[float]:
        """Every value of a `reward` row, e.g. ("eval", "mean"), in order."""
        pattern = rf"\|{prefix}\s+BaseEnvEvents\s+reward\s+{statistic}\s+\|\s+(\S+)"
        return [float(v.replace(",", "")) for v in re.findall(pattern, self.stdout)]

    @property
    def epochs(self) -> int:
        return len(re.findall(r"\*\*\*\*\*\*\*\*\*\* Iteration", self.stdout))

    @property
    def solved(self) -> bool:
        return "reached the reward threshold" in self.stdout

    def first_epoch_above(self, threshold: float) -> int | None:
        return next((i + 1 for i, v in enumerate(self.rows("eval", "mean")) if v > threshold), None)


class Claim(NamedTuple):
    name: str
    readme: str  # the README's words this claim backs, verbatim
    args: list
    seeds: tuple
    check: Callable  # (list of Run, one per seed) -> (ok, what was measured)


def quickstart(runs):
    seconds = [r.seconds for r in runs]
    return all(r.solved for r in runs) and max(seconds) < 10.0, f"solved in {', '.join(f'{s:.1f}' for s in seconds)} s"


def ppo_epochs(runs):
    epochs = [r.epochs for r in runs]
    return all(r.solved for r in runs) and max(epochs) <= 3, f"solved after {epochs} epochs"


def pendulum(runs):
    first = [r.first_epoch_above(-200.0) for r in runs]
    finals = [r.rows("final", "mean")[0] for r in runs]
    ok = all(f is not None and f <= 12 for f in first) and all(-230.0 <= f for f in finals)
    return ok, f"first 64-episode evaluation above -200 at epochs {first}; final evaluations {finals}"


def cutting(runs):
    pieces = [-r.rows("final", "mean")[0] / 180 for r in runs]
    seconds = [r.seconds for r in runs]
    ok = all(p <= 1 / 6 + 1e-3 for p in pieces) and max(seconds) < 120
    return ok, f"{[f'{p:.4f}' for p in pieces]} raw pieces per step, {[r.epochs for r in runs]} epochs, " \
               f"{[f'{s:.0f}' for s in seconds]} s"


def lunarlander(runs):
    seconds = [r.seconds for r in runs]
    return all(r.solved for r in runs) and max(seconds) < 90, \
        f"evaluation mean >= 200 in {[f'{s:.0f}' for s in seconds]} s, finals {[r.rows('final', 'mean')[0] for r in runs]}"


MEMORY_CHAIN = ["env=gymnax", "env.name=MemoryChain-bsuite", "algorithm=ppo", "model=vector_obs_rnn",
                "runner.concurrency=32", "algorithm.n_rollout_steps=24", "algorithm.batch_size=96",
                "algorithm.lr=0.001", "algorithm.entropy_coef=0.01", "algorithm.n_epochs=3"]
POPGYM = ["env=popgym", "env.name=RepeatFirstEasy", "algorithm=ppo", "model=vector_obs_rnn",
          "runner.concurrency=16", "algorithm.n_rollout_steps=64", "algorithm.batch_size=256",
          "algorithm.sequence_length=64", "algorithm.lr=0.001", "algorithm.entropy_coef=0.01", "algorithm.n_epochs=20",
          "algorithm.patience=0"]


def memory_chain(runs):
    evals = [r.rows("eval", "mean") for r in runs]
    finals = [r.rows("final", "mean")[0] for r in runs]
    return all(min(e) >= 0.999 for e in evals) and min(finals) >= 0.999, f"evaluations {evals}, finals {finals}"


def popgym(runs):
    train = [max(r.rows("train", "mean")) for r in runs]  # reached at some epoch
    finals = [r.rows("final", "mean")[0] for r in runs]
    seconds = [r.seconds for r in runs]
    ok = min(train) >= 0.999 and min(finals) >= 0.97
    return ok, f"best training means {train}, finals {finals}, {[f'{s:.0f}' for s in seconds]} s"


CLAIMS = [
    Claim("quickstart", "until the deterministic evaluation mean reaches 475", ["env=cartpole", "algorithm=es"],
          (0, 1, 2), quickstart),
    Claim("ppo", "Maze's PPO defaults; solved in one to three epochs", ["env=cartpole", "algorithm=ppo"],
          (0, 1, 2, 3, 4), ppo_epochs),
    Claim("pendulum", "reaches a 64-episode evaluation mean above -200 after 6 to 12 epochs", PENDULUM, (0, 1, 2),
          pendulum),
    Claim("cutting", "reaches that bound, 0.1667 raw pieces per step", CUTTING, (0,), cutting),
    Claim("lunarlander", "reaches an evaluation mean of 200", ["+experiment=lunarlander_ppo"], (0, 1), lunarlander),
    Claim("memory", "the command above scores 1.0 from its first epoch", MEMORY_CHAIN, (0, 1), memory_chain),
    Claim("popgym", "three seeds reach a training mean of 1.0 (the best possible;",
          POPGYM, (0, 1, 2), popgym),
]


def run(args: list, seed: int, log_dir: str) -> Run:
    cmd = [sys.executable, "-m", "maze_jax.train", *args, f"seeding.agent_base_seed={seed}",
           f"seeding.env_base_seed={seed}", f"log_base_dir={log_dir}"]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{proc.stderr[-2000:]}")
    return Run(proc.stdout, time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="*", default=[c.name for c in CLAIMS])
    options = parser.parse_args()
    failed = []
    with tempfile.TemporaryDirectory() as tmp:
        for claim in CLAIMS:
            if claim.name not in options.only:
                continue
            runs = [run(claim.args, seed, tmp) for seed in claim.seeds]
            ok, measured = claim.check(runs)
            print(f"{'ok  ' if ok else 'FAIL'} {claim.name}: \"{claim.readme}\": {measured}", flush=True)
            if not ok:
                failed.append(claim.name)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
