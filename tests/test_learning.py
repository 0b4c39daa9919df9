"""Learning tests with bounded budgets: ES, PPO and A2C solve CartPole-v1 (deterministic evaluation >= 475)."""

import jax
import pytest

from conftest import make_trainer
from maze_jax.collectors import policy_params
from maze_jax.shell.loop import evaluation_stats, play_in_batches
from maze_jax.shell.programs import compile_programs

pytestmark = pytest.mark.learning

EVAL_MEAN = "eval_BaseEnvEvents/reward/mean"


def train_until_solved(algorithm: str, overrides: list[str], max_epochs: int):
    _, trainer = make_trainer(["env=cartpole", f"algorithm={algorithm}", *overrides])
    programs = compile_programs(trainer, jax.random.key(0), echo=lambda *a, **k: None)
    state, scores = programs.init(jax.random.key(0), jax.random.key(1)), []
    for epoch in range(max_epochs):
        state, _ = programs.train_epoch(state)
        scores.append(evaluation_stats(programs.evaluate, state, jax.random.key(epoch))[EVAL_MEAN])
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


def test_ppo_on_the_masked_cutting_env_beats_random_and_first_fit():
    """The structured, masked cutting env: PPO against a random masked policy and the first-fit heuristic on the
    same 64 episodes. The area of the orders bounds the return: at least 30 raw pieces per 180 steps (-30)."""
    import types

    from maze_jax.envs.cutting_2d import greedy_policy_act
    from maze_jax.models import RandomPolicy
    from maze_jax.trained_policy import TrainedPolicy

    env_spec, trainer = make_trainer(["env=tutorial_cutting_2d_struct_masked", "wrappers=tutorial_cutting_2d",
                                      "model=tutorial_cutting_2d_struct_masked", "algorithm=ppo",
                                      "algorithm.epoch_length=10", "runner.normalization_samples=2000",
                                      "seeding.env_base_seed=0"])
    programs = compile_programs(trainer, jax.random.key(0), echo=lambda *a, **k: None)
    state = programs.init(jax.random.key(0), jax.random.key(1))
    for _ in range(3):  # 3 x 16,000 sub-steps
        state, _ = programs.train_epoch(state)

    def mean_return(policy, params):
        returns, lengths = TrainedPolicy(policy, params, env_spec).play(64, jax.random.key(7))
        assert (lengths == 360).all()
        return float(returns.mean())

    ppo = mean_return(trainer.algorithm.policy, policy_params(state))
    random = mean_return(RandomPolicy(env_spec), None)
    first_fit = mean_return(types.SimpleNamespace(act=greedy_policy_act(first_fit=True)), None)
    print(f"raw pieces per step: ppo {-ppo / 180:.4f}, random {-random / 180:.4f}, first fit {-first_fit / 180:.4f}")
    assert ppo >= random + 1.5 and ppo >= first_fit + 0.5, (ppo, random, first_fit)
    assert ppo >= -30.5  # within half a raw piece of the area bound
