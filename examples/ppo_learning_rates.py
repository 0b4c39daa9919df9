"""PPO trained with four learning rates at once: vmap over a traced hyperparameter.

    python examples/ppo_learning_rates.py
"""

import jax
import jax.numpy as jnp

from maze_jax.api import compose_config, make_train

config, _ = compose_config(["env=cartpole", "algorithm=ppo", "algorithm.n_epochs=2", "algorithm.epoch_length=5",
                            "runner.concurrency=8"])
train = make_train(config)
learning_rates = jnp.array([1e-4, 3e-4, 1e-3, 3e-3])
train_all = jax.jit(jax.vmap(train, in_axes=(None, {"lr": 0})))  # same seed, one lr each
states, metrics = train_all(jax.random.key(0), {"lr": learning_rates})
for lr, ret in zip(learning_rates, metrics["train_BaseEnvEvents/reward/mean"][:, -1]):
    print(f"lr {float(lr):.0e}: mean training return in the last epoch {float(ret):.1f}")
