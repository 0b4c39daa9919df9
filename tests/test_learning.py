"""Learning test with a bounded budget: ES solves CartPole-v1 (deterministic evaluation mean >= 475)."""

import jax
from omegaconf import OmegaConf

from maze_jax.algorithms import build_trainer
from maze_jax.envs import make_gymnax
from maze_jax.models import build_policy
from maze_jax.shell.loop import compile_programs, evaluation_stats

CONF = OmegaConf.load(__import__("pathlib").Path(__file__).parents[1] / "conf" / "algorithm" / "es.yaml")


def test_es_solves_cartpole_within_60_epochs():
    spec = make_gymnax("CartPole-v1")
    policy = build_policy({"_target_": "maze_jax.models.FlattenConcatPolicy", "hidden_units": [64, 64]},
                          spec.env.action_space(spec.params))
    trainer = build_trainer("es", CONF, OmegaConf.create({"n_eval_rollouts": 32}), spec, policy)
    programs = compile_programs(trainer, jax.random.key(0), echo=lambda *a, **k: None)
    state = programs.init(jax.random.key(0))
    scores = []
    for epoch in range(60):
        state, _ = programs.train_epoch(state)
        scores.append(evaluation_stats(programs, state, jax.random.key(epoch))["eval_BaseEnvEvents/reward/mean"])
        if scores[-1] >= 475:
            break
    assert max(scores) >= 475, scores
    # the solved policy holds up on 128 fresh episodes
    final = evaluation_stats(programs, state, jax.random.key(999), repeats=4)["eval_BaseEnvEvents/reward/mean"]
    assert final >= 400, final
