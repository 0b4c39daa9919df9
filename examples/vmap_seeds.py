"""Eight whole ES trainings, one per seed, as a single compiled program: `jax.jit(jax.vmap(train))(keys)`.

    python examples/vmap_seeds.py
"""

import jax

from maze_jax.api import compose_config, make_train

config, _ = compose_config(["env=cartpole", "algorithm=es", "algorithm.n_epochs=5",
                            "algorithm.n_rollouts_per_update=32", "runner.n_eval_rollouts=8"])
train = make_train(config)  # train(key) -> (final state, metrics of every epoch)
states, metrics = jax.jit(jax.vmap(train))(jax.random.split(jax.random.key(0), 8))
returns = metrics["train_BaseEnvEvents/reward/mean"]  # shape (seeds, epochs)
print("mean training return per seed and epoch:\n", returns.round(1))
