"""OpenAI-ES (Maze's ES trainer) as pure functions: `init`, `ask`, `explore` and the learner's `update`.

`ask(state)` gives the population: antithetic Gaussian perturbations of the policy parameters, drawn from the
state's key. It is what the actors act with (`Algorithm.acting`), one member per env, and ES asks the collectors
for fresh episodes (`Algorithm.fresh_episodes`): whatever plays the population (a vmapped scan over JAX envs, or
Python envs stepped on the host) hands back a Trajectory, whose finished episodes' mean return per env is the
member's fitness. `update(state, trajectory)` draws the same noise again from the key, shapes the fitness by
centred ranks and steps the mean with the optimizer. Only keys travel, never noise arrays.
The step size, noise_stddev and l2_penalty are one traced struct (`ESHyperparams`), so `jax.vmap` over states
trains several seeds or hyperparameters at once.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax
from flax import struct
from jax.flatten_util import ravel_pytree

from maze_jax.algorithms import Algorithm, hyperparams_struct, traced
from maze_jax.algorithms.actor_critic import Experience, Trajectory
from maze_jax.algorithms.metrics import action_statistics
from maze_jax.algorithms.optim import scale_by_learning_rate
from maze_jax.config import ConfigError
from maze_jax.models import Policy


@dataclass(frozen=True)
class ESConfig:
    """ES settings with Maze's names. Sizes are static; the fields declared `traced` are the default
    hyperparameters, which live traced in the state (`ESHyperparams`)."""

    population: int = 128
    """Perturbed policies per update (Maze's `n_rollouts_per_update`); antithetic pairs, so even."""
    n_timesteps_per_update: int = 0
    """Minimum env steps per update: members play episodes back to back for
    max(episode length, ceil(n_timesteps_per_update / population)) steps. 0 = one episode length."""
    max_steps: int = 0
    """Episode length cap in training rollouts, in env steps; 0 = the env's own limit. Evaluation keeps the env's."""
    n_eval_episodes: int = 10
    """Evaluation episodes after every epoch (Maze's `runner.n_eval_rollouts`)."""
    deterministic: bool = True
    """Members and evaluations act on the distribution's mode; false samples from it (Maze's behaviour)."""
    optimizer: str = "adam"
    """adam, or sgd with momentum 0.9 as Maze defines it: v = 0.9 v + 0.1 g, step -step_size * v."""
    n_epochs: int = 200
    """Epochs (one update each) to train; 0 = until stopped."""
    patience: int = 0
    """Epochs without a better evaluation before early stopping; 0 = never (Maze's ES has none)."""
    step_size: float = traced(0.01)
    """The optimizer's step size."""
    noise_stddev: float = traced(0.02)
    """Standard deviation of the parameter perturbations."""
    l2_penalty: float = traced(0.005)
    """Weight decay added to the (negated) ES gradient."""
    mesh: Any = None
    """A jax.sharding.Mesh to split the population over (None: one device); set by the shell, not a config key."""

    name = "es"
    epoch_length = 1
    """One update per epoch."""

    @property
    def n_envs(self) -> int:
        """One env per member: the collectors' batch."""
        return self.population

    @property
    def n_rollout_steps(self) -> int:
        """The least steps each member plays on a JAX env (more where an episode lasts longer)."""
        return -(-self.n_timesteps_per_update // self.population)

    @property
    def deterministic_eval(self) -> bool:
        return self.deterministic

    def __post_init__(self):
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"algorithm.optimizer.name={self.optimizer!r} is unknown. Valid: {', '.join(OPTIMIZERS)}")

    def hyperparams(self) -> ESHyperparams:
        """The traced hyperparameters this config sets."""
        return ESHyperparams.of(self)


ESHyperparams = hyperparams_struct(ESConfig, "ESHyperparams")


class ESState(struct.PyTreeNode):
    """The learner: mean parameters ({"policy": ...}), optimizer state, RNG key, hyperparameters."""

    params: Any
    opt_state: Any
    key: jax.Array
    hparams: ESHyperparams


# sgd: momentum as Maze defines it, v = 0.9 v + (1 - 0.9) g (an exponential average, not a sum)
OPTIMIZERS = {"adam": optax.scale_by_adam(), "sgd": optax.ema(decay=0.9, debias=False)}


def centered_ranks(x: jax.Array) -> jax.Array:
    """Ranks of `x` scaled to [-0.5, 0.5] (OpenAI-ES fitness shaping: invariant to the scale of returns).

    Tied values share their average rank, so equal returns (say, every member at CartPole's 500) push
    the gradient nowhere instead of in an arbitrary direction set by the sort order.
    """
    ordered = jnp.sort(x)
    ranks = (jnp.searchsorted(ordered, x, side="left") + jnp.searchsorted(ordered, x, side="right") - 1) / 2
    return ranks.astype(jnp.float32) / (x.shape[0] - 1) - 0.5


def antithetic_population(theta: jax.Array, noise: jax.Array, sigma) -> jax.Array:
    """[theta + sigma*noise; theta - sigma*noise]: pair i is rows i and i + len(noise)."""
    return jnp.concatenate([theta + sigma * noise, theta - sigma * noise])


def es_gradient(fitness: jax.Array, noise: jax.Array) -> jax.Array:
    """Ascent direction g = sum_i (r_i+ - r_i-) noise_i / n_pairs, with r the centred ranks of `fitness`."""
    ranks = centered_ranks(fitness)
    n_pairs = noise.shape[0]
    weights = ranks[:n_pairs] - ranks[n_pairs:]
    return weights @ noise / n_pairs


def init(key, hparams: ESHyperparams, policy: Policy, obs_example, optimizer: str) -> ESState:
    """A fresh learner: the policy's parameters initialised from `key`."""
    key, init_key = jax.random.split(key)
    params = {"policy": policy.init(init_key, obs_example)}
    return ESState(params, OPTIMIZERS[optimizer].init(ravel_pytree(params)[0]), key, hparams)


def noise(state: ESState, population: int) -> jax.Array:
    """The perturbations (population / 2, n_params) of this update, drawn from the state's key."""
    theta, _ = ravel_pytree(state.params)
    return jax.random.normal(jax.random.fold_in(state.key, 1), (population // 2, theta.shape[0]))


def ask(state: ESState, population: int):
    """The population's policy parameters (a leading member axis on every leaf); member i and member
    i + population / 2 are an antithetic pair."""
    theta, unravel = ravel_pytree(state.params)
    thetas = antithetic_population(theta, noise(state, population), state.hparams.noise_stddev)
    return jax.vmap(unravel)(thetas)["policy"]


def explore(policy: Policy, deterministic: bool, members, obs, key, memory=()):
    """Each env's action under its member's parameters (leading env axis on `members`, `obs` and `memory`), the
    mode or a sample: (env actions, Experience without log-probabilities or values, memory)."""
    out, memory = jax.vmap(policy.apply_with_memory)(members, obs, memory)
    if deterministic:
        action = policy.dist.mode(out)
    else:
        action = jax.vmap(policy.dist.sample)(jax.random.split(key, jax.tree.leaves(obs)[0].shape[0]), out)
    zeros = jnp.zeros(jax.tree.leaves(obs)[0].shape[0], jnp.float32)
    return policy.dist.to_env(action), Experience(action, zeros, zeros), memory


def in_ended_episodes(trajectory: Trajectory) -> jax.Array:
    """(T, B): the steps whose episode ended within the trajectory (not those of an episode still running at the
    end, nor padding after an env's episode)."""
    done = trajectory.terminated | trajectory.truncated
    return jnp.flip(jnp.cumsum(jnp.flip(done, 0), 0), 0) > 0


def fitness(trajectory: Trajectory) -> jax.Array:
    """(B,): each env's mean return over its episodes that ended within the trajectory (0 where none did)."""
    n_episodes = (trajectory.terminated | trajectory.truncated).sum(0)
    total = jnp.where(in_ended_episodes(trajectory), trajectory.reward, 0.0).sum(0)
    return jnp.where(n_episodes > 0, total / jnp.maximum(n_episodes, 1), 0.0)


def update(state: ESState, trajectory: Trajectory, population: int, optimizer: str, dist=None,
           sub_step_ids: Callable | None = None, head_sub_steps: dict | None = None) -> tuple[ESState, dict]:
    """One ES step from the episodes each member of `ask(state)` played (env i: member i): the new state and its
    statistics, with Maze's action rows of the steps of those episodes when the policy's distribution `dist` is
    given (a structured env's heads counted at their sub-step: `sub_step_ids(obs)`, `head_sub_steps`)."""
    state, metrics = step(state, fitness(trajectory), population, optimizer)
    if dist is None:
        return state, metrics
    ids = jnp.zeros(trajectory.reward.shape, jnp.int32) if sub_step_ids is None else \
        jax.vmap(sub_step_ids)(trajectory.obs)
    acting = jnp.where(in_ended_episodes(trajectory), ids, -1)
    return state, {**metrics, **action_statistics(dist, trajectory.action, acting, head_sub_steps)}


def step(state: ESState, fitness: jax.Array, population: int, optimizer: str) -> tuple[ESState, dict]:
    """One ES step from the fitness of each member of `ask(state)`: returns the new state and its statistics."""
    theta, unravel = ravel_pytree(state.params)
    g = es_gradient(fitness, noise(state, population))
    direction, opt_state = OPTIMIZERS[optimizer].update(-g + state.hparams.l2_penalty * theta, state.opt_state)
    updates = scale_by_learning_rate(direction, state.hparams.step_size)
    theta = theta + updates
    policy_norm = jnp.linalg.norm(theta)
    metrics = {
        "policy_grad_norm": jnp.linalg.norm(g),
        "policy_norm": policy_norm,
        "update_ratio": jnp.linalg.norm(updates) / jnp.maximum(policy_norm, 1e-12),
    }
    return state.replace(params=unravel(theta), opt_state=opt_state, key=jax.random.split(state.key)[0]), metrics


def make_es(config: ESConfig, policy: Policy, obs_example, sub_step_ids: Callable | None = None,
            head_sub_steps: dict | None = None) -> Algorithm:
    """ES with its static settings bound: the `Algorithm` that collectors and the shell drive."""
    return Algorithm(
        name=config.name,
        config=config,
        policy=policy,
        hyperparams=config.hyperparams(),
        init=lambda key, hparams: init(key, hparams, policy, obs_example, config.optimizer),
        update=functools.partial(update, population=config.population, optimizer=config.optimizer,
                                 dist=policy.dist, sub_step_ids=sub_step_ids, head_sub_steps=head_sub_steps),
        explore=functools.partial(explore, policy, config.deterministic),
        initial_memory=policy.initial_memory,
        acting=functools.partial(ask, population=config.population),
        fresh_episodes=True,
        episode_cap=config.max_steps,
    )
