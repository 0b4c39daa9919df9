"""Assembly: an `Algorithm` for the env's spaces, and the `Trainer` that feeds it from the right collector.

The shell (`session`) and the research API (`research.make_train`) both build through here, from settings that
were read at the border (`maze_jax.shell.settings`)."""

from __future__ import annotations

from typing import Any

import jax

from maze_jax.algorithms import Algorithm
from maze_jax.algorithms.actor_critic import ActorCriticConfig, make_actor_critic
from maze_jax.algorithms.es import ESConfig, make_es
from maze_jax.algorithms.impala import ImpalaConfig, make_impala
from maze_jax.algorithms.losses import Losses
from maze_jax.algorithms.sac import BOX_DISTRIBUTION, SACConfig, make_sac
from maze_jax.collectors import Trainer
from maze_jax.config import ConfigError
from maze_jax.collectors.jax_envs import jax_trainer
from maze_jax.collectors.seeds import with_seeds
from maze_jax.envs import EnvSpec
from maze_jax.envs.structured import ACTOR_ID, sub_steps
from maze_jax.models import build_actor_critic, build_policy
from maze_jax.models.state_action_critic import build_state_action_critic
from maze_jax.shell.collectors.host import host_trainer
from maze_jax.shell.collectors.ray_workers import ray_trainer
from maze_jax.shell.memory import GiB, free_bytes
from maze_jax.shell.settings import HostSettings


def build_algorithm(config: Any, env_spec: EnvSpec, model: Any, critic: Any = None,
                    losses: Losses | None = None) -> Algorithm:
    """The algorithm `config` sets up, with networks for `env_spec`'s spaces.

    `model` and `critic` are model configs (dicts with a `_target_`) or flax modules; `losses` replaces PPO's or
    A2C's loss terms. Settings of an algorithm of one's own build themselves (`config.build(...)`).
    The networks are traced once here (nothing compiles), so a model config mistake ends the build."""
    obs_example = env_spec.observation_example()
    steps = sub_steps(env_spec.env)
    ids = (lambda obs: obs[ACTOR_ID]) if steps else None  # a structured env's acting sub-step, from its observation
    head_sub_steps = {key: i for i, step in enumerate(steps) for key in step.action_keys}
    if isinstance(config, ESConfig):
        algorithm = make_es(config, build_policy(model, env_spec), obs_example, ids, head_sub_steps)
    elif isinstance(config, ActorCriticConfig):
        algorithm = make_actor_critic(config, build_actor_critic(model, critic, env_spec), obs_example, ids,
                                      tuple(step.name for step in steps), losses, head_sub_steps)
    elif isinstance(config, ImpalaConfig):
        if sub_steps(env_spec.env):
            raise ConfigError(f"IMPALA learns flat envs; {env_spec.name} acts in sub-steps: use algorithm=ppo")
        algorithm = make_impala(config, build_actor_critic(model, critic, env_spec), obs_example)
    elif isinstance(config, SACConfig):
        if sub_steps(env_spec.env):
            raise ConfigError(f"SAC learns flat envs; {env_spec.name} acts in sub-steps: use algorithm=ppo")
        policy = build_policy(model, env_spec, box_auto=BOX_DISTRIBUTION)
        algorithm = make_sac(config, policy, lambda n: build_state_action_critic(model, critic, n), obs_example)
    else:
        algorithm = config.build(env_spec, model, critic, losses)
    jax.eval_shape(algorithm.init, jax.random.key(0), algorithm.hyperparams)
    return algorithm


def check_fits_memory(algorithm: Algorithm, n_seeds: int, n_configs: int = 1) -> None:
    """One line, before anything compiles, when the learners' states (a replay buffer above all) of every member
    (`n_configs` configurations of a grid times `n_seeds`) cannot fit: they need room for at least two copies (the
    state and the next one)."""
    shapes = jax.eval_shape(algorithm.init, jax.random.key(0), algorithm.hyperparams)
    needed = 2 * n_seeds * n_configs * sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(shapes))
    available = free_bytes(jax.local_devices()[0])
    if available is not None and needed > available:
        size = getattr(algorithm.config, "replay_buffer_size", None)
        hint = f" (algorithm.replay_buffer_size={size}: make it smaller)" if size else ""
        grid = f" of each of {n_configs} grid configurations" if n_configs > 1 else ""
        raise ConfigError(f"the learner's state needs {needed / GiB:.1f} GiB for {n_seeds} seed(s){grid}{hint}; "
                          f"{available / GiB:.1f} GiB are available")


def build_trainer(algorithm: Algorithm, env_spec: EnvSpec, n_seeds: int = 1,
                  host: HostSettings = HostSettings(), grid=None) -> Trainer:
    """The trainer that runs `algorithm` on `env_spec`: one jitted program per epoch for a JAX env, the host
    collector (with `host`'s settings) for a Python env, its envs on Ray workers with `host.ray`. With a `grid`
    (`shell.grid.Grid`), every configuration's `n_seeds` seeds train side by side (a Python env: envs of their own)."""
    n_configs = 1 if grid is None else grid.size
    check_fits_memory(algorithm, n_seeds, n_configs)
    if host.ray is not None:
        trainer = ray_trainer(algorithm, env_spec, n_seeds, host)
    elif env_spec.is_python:
        trainer = host_trainer(algorithm, env_spec, n_seeds * n_configs, host)
    else:
        trainer = jax_trainer(algorithm, env_spec)
    return with_seeds(trainer, n_seeds, None if grid is None else grid.hyperparams)
