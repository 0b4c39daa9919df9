"""A trained policy loaded from a run directory, to call on observations from any code (no Hydra, no loop).

    from maze_jax.trained_policy import load_policy
    policy = load_policy("outputs/<run>")            # the best checkpoint's policy
    action = policy.compute_action(observation)     # deterministic by default
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
from dataclasses import dataclass, field
from typing import Any, Iterable

import jax
import jax.numpy as jnp
import numpy as np
from omegaconf import DictConfig

from maze_jax.algorithms.sac import BOX_DISTRIBUTION
from maze_jax.collectors.evaluation import evaluate
from maze_jax.collectors.seeds import one_seed_evaluation
from maze_jax.config import ConfigError, first_line
from maze_jax.envs import EnvSpec, as_env_spec, build_env
from maze_jax.models import Policy, RandomPolicy, build_policy
from maze_jax.models.distributions import BOX_DISTRIBUTIONS
from maze_jax.models.policy import action_distribution
from maze_jax.models.recurrent import act_with_memory, policy_memory
from maze_jax.shell.checkpoints import BEST, LATEST, fit_arrays
from maze_jax.shell.grid import count_configs
from maze_jax.shell.collectors.host import HostEvaluator
from maze_jax.shell.loop import EpisodeProgress, play_in_batches
from maze_jax.shell.programs import RUNS_PER_EPOCH
from maze_jax.shell.resume import read_first_usable, stored_statistics
from maze_jax.shell.settings import CONFIG_FILE, load_yaml, plain
from maze_jax.shell.trust import check_trusted
from maze_jax.shell.wrappers import wrap_env


def _shapes(tree):
    """Shapes of an observation (array or dict of arrays) for messages: (4,) or {'a': (2,), ...}."""
    return tree.shape if hasattr(tree, "shape") else {k: _shapes(v) for k, v in tree.items()}


@dataclass(frozen=True)
class TrainedPolicy:
    """A policy network with its parameters and the env it was trained for (observation shapes, action space).

    A recurrent policy remembers the observations `compute_action` has seen: call `reset()` at an episode's start."""

    policy: Any  # Policy, or RandomPolicy: anything with act(params, obs_batch, key, deterministic)
    params: Any
    env_spec: EnvSpec
    config: DictConfig | None = None  # the run's config, when loaded from a run directory
    meta: dict | None = None  # the checkpoint's counters: epoch, best_score, ...
    eval_episodes: int | None = None  # episodes per evaluation batch in training (a rollout in such batches
    # with the run's final-evaluation key reproduces that evaluation)
    _memory: dict = field(default_factory=dict, compare=False, repr=False)  # a recurrent policy's, by batch size

    @functools.cached_property
    def _act(self):
        return jax.jit(functools.partial(act_with_memory, self.policy), static_argnums=3)

    def reset(self) -> None:
        """Forgets the observations seen so far (a recurrent policy's memory): the next action starts an episode."""
        self._memory.clear()

    def compute_action(self, observation, deterministic: bool = True, key: jax.Array | None = None):
        """The env action for one observation (a Discrete choice as a Python int), or actions for a batch of them
        (a leading axis).

        Stochastic actions (`deterministic=False`) need a `key`. A Python env's observations and actions are its
        own (gymnasium's): converted on the way in and out."""
        python = self.env_spec.is_python
        if python:
            observation = self.env_spec.env.to_observation(observation)
        example = self.env_spec.observation_example()
        try:
            obs = jax.tree.map(lambda x, e: jnp.asarray(x, e.dtype), observation, example)
        except ValueError:  # a dict with other keys than the env's
            raise ValueError(f"observation with keys {sorted(observation)}: expected {sorted(example)}") from None
        shapes = lambda tree: [x.shape for x in jax.tree.leaves(tree)]
        single = shapes(obs) == shapes(example)
        if not single and [s[1:] for s in shapes(obs)] != shapes(example):
            raise ValueError(f"observation of shape {_shapes(obs)}: expected {_shapes(example)} "
                             "(or a batch of those, with a leading axis)")
        batch = jax.tree.map(lambda x: x[None], obs) if single else obs
        normalize = getattr(self.env_spec.env, "normalize_observation", None)  # as the policy saw them in training
        batch = normalize(batch) if normalize is not None else batch
        if key is None:
            if not deterministic:
                raise ValueError("stochastic actions (deterministic=False) need a key, e.g. jax.random.key(0)")
            key = jax.random.key(0)
        n = jax.tree.leaves(batch)[0].shape[0]
        memory = self._memory.get(n)
        actions, memory = self._act(self.params, batch, key, deterministic,
                                    policy_memory(self.policy, n) if memory is None else memory)
        self._memory.clear()  # a new batch size starts new episodes
        self._memory[n] = memory
        if python:
            actions = self.env_spec.env.to_env_action(jax.device_get(actions))
        return jax.tree.map(_one_action, actions) if single else actions

    def play(self, n_episodes: int, key: jax.Array, batch_size: int | None = None, deterministic: bool = True,
             record: bool = False, progress: EpisodeProgress | None = None):
        """Returns and lengths (float numpy arrays; NaN for an episode that did not end within the step limit) of
        `n_episodes` episodes on `env_spec`, played `batch_size` at a time (default: all at once) as the final
        evaluation plays them; with `record`, also the batches' `Recording`s (time-major, on the host). `progress`
        reports while they play (between a Python env's steps, and between batches)."""
        batch = batch_size or n_episodes
        if self.env_spec.is_python:
            play = one_seed_evaluation(HostEvaluator(self.policy, self.env_spec, batch, 1, deterministic,
                                                     record=record))
        else:
            # compiled as a run compiles its evaluation: XLA's options change float rounding (LLVM forms fused
            # multiply-adds above level 0), and a rollout of the run's seed reproduces its final evaluation
            play = jax.jit(lambda p, k: evaluate(self.policy, p, self.env_spec, k, batch, deterministic, record),
                           compiler_options=RUNS_PER_EPOCH)
        recorded = []

        progress = progress or EpisodeProgress("", n_episodes, math.inf, lambda *args, **kwargs: None)  # silent

        def play_batch(params, key):
            played = play(params, key, progress.poll) if self.env_spec.is_python else play(params, key)
            if not record:
                return played
            stats, trajectory = played
            recorded.append(jax.device_get(trajectory))
            return stats

        try:
            returns, lengths = play_in_batches(play_batch, self.params, key, n_episodes, progress.poll,
                                               progress.on_batch)
        finally:
            getattr(play, "close", lambda: None)()
        return (returns, lengths, recorded) if record else (returns, lengths)


def _one_action(batch):
    """The first action of a batch as an env takes one: a discrete choice as a Python int (`env.step(3)`), anything
    with axes as an array."""
    action = batch[0]
    if np.ndim(action) == 0 and np.issubdtype(np.asarray(action).dtype, np.integer):
        return int(action)
    return action


def load_config(run_dir: str) -> DictConfig:
    """The saved config (`hydra_config.yaml`) of a run directory."""
    if not os.path.isdir(run_dir):
        raise ConfigError(f"run directory {run_dir!r} does not exist")
    return load_yaml(os.path.join(run_dir, CONFIG_FILE), f"run directory {run_dir!r}")


def check_fits(policy: Policy, params, env_spec: EnvSpec) -> None:
    """A ConfigError unless the policy's network takes this env's observations and acts in its action space."""
    def needed(box: str):
        try:
            return action_distribution(env_spec, box)
        except ConfigError:  # a squashed Gaussian on an unbounded Box
            return None

    options = [dist for dist in map(needed, BOX_DISTRIBUTIONS) if dist is not None]
    if policy.dist not in options:  # the env's space shown with the policy's kind of distribution, where it has one
        shown = next((dist for dist in options if type(dist) is type(policy.dist)), options[0])
        raise ConfigError(f"the policy acts with {policy.dist}, but env {env_spec.name} needs {shown}")
    obs = jax.tree.map(lambda x: x[None], env_spec.observation_example())
    try:
        jax.eval_shape(lambda p, o: policy.act(p, o, jax.random.key(0), True), params, obs)
    except Exception as error:  # flax raises shape errors of several kinds
        raise ConfigError(f"the policy does not take env {env_spec.name}'s observations "
                          f"{jax.tree.map(jnp.shape, env_spec.observation_example())}: "
                          f"{first_line(error)}") from None


def one_seed(params, n_seeds: int, seed_scores, seed: int | None = None, config: int | None = None,
             n_configs: int = 1):
    """The parameters of one member of a several-member run (`runner.n_seeds` seeds of each of a grid's `n_configs`
    configurations; `n_seeds` counts all members): configuration `config`'s seed `seed`; by default the member
    with the best evaluation score (of `config`, when given). Parameters of a one-member run pass unchanged."""
    per_config = n_seeds // n_configs
    if config is not None and n_configs == 1:
        raise ConfigError(f"config={config}: the run trained no grid of hyperparameters (one configuration)")
    if config is None and seed is not None and n_configs > 1:
        raise ConfigError(f"seed={seed}: the run trained a grid of {n_configs} configurations; policy.config=<k> "
                          f"picks one (0 to {n_configs - 1})")
    if config is not None and not 0 <= config < n_configs:
        raise ConfigError(f"config={config}: the run trained configurations 0 to {n_configs - 1}")
    if n_seeds == 1:
        if seed not in (None, 0):
            raise ConfigError(f"seed={seed}: the run trained one seed (runner.n_seeds=1), seed 0")
        return params
    if seed is not None and not 0 <= seed < per_config:
        raise ConfigError(f"seed={seed}: the run trained seeds 0 to {per_config - 1}")
    first = 0 if config is None else config * per_config
    candidates = range(n_seeds) if config is None else range(first, first + per_config)
    scores = np.asarray(seed_scores if seed_scores is not None else [0.0] * n_seeds, np.float64)
    member = max(candidates, key=lambda m: scores[m]) if seed is None else first + seed
    return jax.tree.map(lambda x: x[member], params)


def load_policy(run_dir: str, checkpoint: str = "best", env=None, model=None,
                seed: int | None = None, echo=print, trust: bool | Iterable[str] = False,
                config: int | None = None) -> TrainedPolicy:
    """The policy of a training run's `best` (default) or `latest` checkpoint.

    The env, its wrappers (with the run's normalisation statistics) and the policy network are rebuilt from the
    run's saved config; `env` (an EnvSpec, a gymnax env or an (env, params) pair) and `model` (a flax module) are
    needed only for runs trained from such objects. For a run of several seeds (`runner.n_seeds`), `seed` picks
    one; by default the seed with the best evaluation. For a grid run (`+grid...`), `config` picks a configuration
    (by default the one whose seed has the best evaluation) and `seed` one of its seeds. A corrupt checkpoint is
    skipped with a line (`echo`).

    A run directory is data: the code its config names (env factory, wrappers, network) must be maze_jax's, or
    listed in `trust` (dotted paths or packages: `trust=["my_project"]`), or the whole run is trusted
    (`trust=True`); anything else is refused before it is imported. An `env` or `model` passed replaces the
    config's, which is then not imported at all."""
    if checkpoint not in ("best", "latest"):
        raise ConfigError(f"checkpoint={checkpoint!r}: expected best or latest")
    cfg = load_config(run_dir)
    plain_cfg = plain(cfg)
    if trust is not True:
        used = {k: v for k, v in plain_cfg.items() if not (k == "env" and env is not None or
                                                            k == "model" and model is not None)}
        check_trusted(used, () if trust is False else tuple(trust), f"run directory {run_dir!r}",
                      "load_policy(..., trust=True)")
    if env is None and not (plain_cfg.get("env") or {}).get("_target_"):
        raise ConfigError(f"{run_dir!r} was trained with an env object: pass it, load_policy(..., env=...)")
    env_spec = build_env(plain_cfg["env"]) if env is None else as_env_spec(env)
    env_spec = wrap_env(env_spec, plain_cfg.get("wrappers"), stored_statistics(run_dir), echo=lambda *a, **k: None)
    shared = bool((plain_cfg.get("critic") or {}).get("shared", False))
    trained_by_sac = str((plain_cfg.get("algorithm") or {}).get("_target_", "")).rpartition(".")[2] == "sac"
    policy = build_policy(plain_cfg["model"] if model is None else model, env_spec, shared_value=shared,
                          **({"box_auto": BOX_DISTRIBUTION} if trained_by_sac else {}))  # as the run built it
    folders = (BEST, LATEST) if checkpoint == "best" else (LATEST, BEST)  # a corrupt one is skipped, and said
    saved, meta, _ = read_first_usable(run_dir, lambda store, step: store.restore_raw(step)["learner"]["params"][
        "policy"], echo, folders)
    meta = meta.to_meta()
    template = jax.eval_shape(policy.init, jax.random.key(0), env_spec.observation_example())
    n_seeds = np.shape(jax.tree.leaves(saved)[0])[0] if np.ndim(jax.tree.leaves(saved)[0]) > np.ndim(
        jax.tree.leaves(template)[0]) else 1
    params = fit_arrays(template, one_seed(saved, n_seeds, meta.get("seed_best_scores"), seed, config,
                                           count_configs(plain_cfg.get("grid"))),
                        f"the policy in {run_dir!r}")
    return TrainedPolicy(policy, jax.tree.map(jnp.asarray, params), env_spec, cfg, meta, meta.get("eval_episodes"))


def trained_policy(input_dir: str, env_spec: EnvSpec, checkpoint: str = "best", seed: int | None = None,
                   deterministic: bool = True, config: int | None = None) -> TrainedPolicy:
    """Rollout policy factory (`policy=trained_policy`): the run's policy, checked to fit the rollout's env."""
    if not input_dir:
        raise ConfigError("policy=trained_policy needs input_dir=<a training run directory>")
    loaded = load_policy(input_dir, checkpoint, seed=seed, trust=True,  # rollout_config checked the run's config
                         config=config)
    check_fits(loaded.policy, loaded.params, env_spec)
    return dataclasses.replace(loaded, env_spec=env_spec)


def random_policy(input_dir: str, env_spec: EnvSpec, masked: bool = False) -> TrainedPolicy:
    """Rollout policy factory (`policy=random_policy`, `policy=masked_random_policy`): uniformly random actions, a
    baseline; `masked`: only actions the env's masks allow."""
    return TrainedPolicy(RandomPolicy(env_spec, bool(masked)), None, env_spec)
