"""Drive a trainer's pure functions from a loop of your own: init, train_epoch and evaluate.

    python examples/own_loop.py
"""

import jax

from maze_jax.api import compose_config, make_train
from maze_jax.models import FlattenConcatPolicy
from maze_jax.algorithms.metrics import episode_statistics

config, _ = compose_config(["env=cartpole", "algorithm=a2c", "algorithm.epoch_length=10", "runner.concurrency=8"])
# Any flax module with an `n_outputs` field can be the model; one copy is the policy, another the critic.
trainer = make_train(config, env="CartPole-v1", model=FlattenConcatPolicy(n_outputs=0, hidden_units=(32,))).trainer
train_epoch, evaluate = jax.jit(trainer.train_epoch), jax.jit(trainer.evaluate)

state = trainer.init(jax.random.key(1), jax.random.key(2))  # the agent's key, the envs' key
for epoch in range(3):
    state, metrics = train_epoch(state)
    evaluation = episode_statistics(evaluate(state, jax.random.key(epoch)), "eval")
    print(f"epoch {epoch}: train return {float(metrics['train_BaseEnvEvents/reward/mean']):6.1f}, "
          f"evaluation return {float(evaluation['eval_BaseEnvEvents/reward/mean']):6.1f}")
