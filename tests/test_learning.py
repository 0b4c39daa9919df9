"""Learning tests with bounded budgets: ES, PPO and A2C solve CartPole-v1 (deterministic evaluation >= 475)."""

import jax
import pytest

from maze_jax.algorithms import build_trainer
from maze_jax.envs import make_gymnax
from maze_jax.session import compose_config
from maze_jax.shell.loop import compile_programs, evaluation_stats, play_in_batches

EVAL_MEAN = "eval_BaseEnvEvents/reward/mean"


def train_until_solved(algorithm: str, overrides: list[str], max_epochs: int):
    cfg, _ = compose_config([f"algorithm={algorithm}", *overrides])
    trainer = build_trainer(cfg, make_gymnax("CartPole-v1"))
    programs = compile_programs(trainer, jax.random.key(0), echo=lambda *a, **k: None)
    state, scores = programs.init(jax.random.key(0)), []
    for epoch in range(max_epochs):
        state, _ = programs.train_epoch(state)
        scores.append(evaluation_stats(programs, state, jax.random.key(epoch))[EVAL_MEAN])
        if scores[-1] >= 475:
            break
    return programs, state, scores


@pytest.mark.parametrize("algorithm, overrides, max_epochs", [
    ("es", ["runner.n_eval_rollouts=32"], 60),          # <= 60 x 64,000 env steps
    ("ppo", [], 5),                                     # <= 5 x 40,000 env steps, Maze's PPO defaults
    ("a2c", [], 15),                                    # <= 15 x 40,000 env steps, Maze's A2C defaults
])
def test_algorithm_solves_cartpole_within_budget(algorithm, overrides, max_epochs):
    programs, state, scores = train_until_solved(algorithm, overrides, max_epochs)
    assert max(scores) >= 475, scores
    # the solved policy holds up on fresh episodes
    returns, _ = play_in_batches(programs.evaluate, state, jax.random.key(999), 128)
    assert returns.shape == (128,) and returns.mean() >= 400, returns.mean()
