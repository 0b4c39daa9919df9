"""Train, evaluate and use a policy from a script, then load it back without Hydra.

    python examples/train_from_python.py
"""

import numpy as np

from maze_jax.api import RunContext
from maze_jax.trained_policy import load_policy

# The command line's config groups by name, Maze-style overrides, a dict merged over a group's option.
rc = RunContext(env="cartpole", algorithm="ppo", runner="dev", model={"hidden_units": [32, 32]},
                overrides={"algorithm.lr": 1e-3, "algorithm.epoch_length": 5, "runner.concurrency": 8})
rc.train(n_epochs=2)  # table, TensorBoard and checkpoints in rc.run_dir, as on the command line
rc.train(n_epochs=1)  # continues where the first call stopped
stats = rc.evaluate(n_episodes=50)
print(f"mean return of the best policy over 50 episodes: {stats['eval_BaseEnvEvents/reward/mean']:.1f}")

# The trained policy in other code: only the run directory is needed.
policy = load_policy(rc.run_dir)
observation = np.array([0.01, -0.02, 0.03, 0.0], np.float32)
print("action for", observation, "->", int(policy.compute_action(observation)))
print("epoch of the loaded checkpoint:", policy.meta["epoch"])
