"""Training from Python: `RunContext`, the script-side twin of `python -m maze_jax.train` (same config tree,
run directory, table and checkpoints, through the same `session.run_training`).

    from maze_jax.api import RunContext
    rc = RunContext(env="cartpole", algorithm="ppo", overrides={"algorithm.lr": 1e-3})
    rc.train(n_epochs=5)
    rc.evaluate(n_episodes=20)["eval_BaseEnvEvents/reward/mean"]
    rc.compute_action(observation)

For composing trainer functions in research code, see `maze_jax.research.make_train` (re-exported here) and
`compose_config`.
"""

from __future__ import annotations

import datetime
import json
import os
from typing import Any, Callable

from maze_jax.xla_flags import apply_defaults

apply_defaults()  # before anything imports jax

from omegaconf import DictConfig, OmegaConf, open_dict  # noqa: E402

from maze_jax.algorithms.metrics import episode_table  # noqa: E402
from maze_jax.collectors import policy_params  # noqa: E402
from maze_jax.config import ConfigError, env_label  # noqa: E402
from maze_jax.envs.make import run_label  # noqa: E402
from maze_jax.research import make_train  # noqa: E402
from maze_jax.shell.checkpoints import LATEST  # noqa: E402
from maze_jax.shell.session import RunResult, run_training  # noqa: E402
from maze_jax.shell.settings import compose_config  # noqa: E402
from maze_jax.trained_policy import TrainedPolicy, one_seed  # noqa: E402

__all__ = ["RunContext", "make_train", "compose_config"]


def _override(key: str, value: Any) -> str:
    """A Hydra command-line override for a Python value (lists, strings, None and booleans included)."""
    return f"{key}={json.dumps(value) if not isinstance(value, str) else value}"


class RunContext:
    """One training run configured like the command line, driven from Python.

    Each of env, wrappers, model, critic, algorithm and runner may be an option name of its config group
    ("cartpole", "ppo", "dev"), a dict (merged over the group's chosen or default option, e.g.
    `model={"hidden_units": [32, 32]}`), or, for env and model, an object already built: a gymnax-style env
    (or an EnvSpec, or an (env, params) pair) and a flax module with an `n_outputs` field. `overrides` are
    Maze-style `{"algorithm.lr": 1e-3}` (or a list of "key=value" strings). `run_dir` defaults to the command
    line's `outputs/<env>-<model>-<algorithm>-<runner>/<time>`; a `run_dir` that already holds a run is refused
    (resume it with `overrides={"input_dir": <that run>}` and a new run_dir). `echo` prints the table (pass
    `lambda *a, **k: None` for silence).
    """

    def __init__(self, env: Any = "cartpole", algorithm: Any = "es", model: Any = None, critic: Any = None,
                 wrappers: Any = None, runner: Any = None, overrides: dict | list | None = None,
                 run_dir: str | None = None, echo: Callable = print):
        import flax.linen as nn

        from maze_jax.envs import as_env_spec
        from maze_jax.shell.settings import draw_seeds

        given = dict(env=env, wrappers=wrappers, model=model, critic=critic, algorithm=algorithm, runner=runner)
        names = [f"{group}={value}" for group, value in given.items() if isinstance(value, str)]
        if isinstance(overrides, dict):
            overrides = [_override(k, v) for k, v in overrides.items()]
        cfg, choices = compose_config(names + list(overrides or []))
        self.env_spec = None if env is None or isinstance(env, (str, dict)) else as_env_spec(env)
        if model is not None and not isinstance(model, (str, dict, nn.Module)):
            raise TypeError(f"model must be a config name, a dict or a flax module, not {type(model).__name__}")
        self.model = model if isinstance(model, nn.Module) else None
        with open_dict(cfg):
            for group, value in given.items():
                if isinstance(value, dict):
                    cfg[group] = OmegaConf.merge(cfg[group] or {}, value)
            if self.env_spec is not None:  # recorded for the reader; such a run is rebuilt from the same objects
                cfg.env = {"name": self.env_spec.name, "object": type(self.env_spec.env).__qualname__,
                           "reward_threshold": self.env_spec.reward_threshold}
            if self.model is not None:
                cfg.model = {"object": type(self.model).__qualname__}
        draw_seeds(cfg)
        self.config: DictConfig = cfg
        label = lambda g: choices.get(g) if isinstance(given[g], (str, type(None))) else "custom"
        env_part = env_label(self.env_spec.name, "custom") if self.env_spec is not None else run_label(
            cfg.env.get("name"), label("env"), cfg.env.get("backend", "auto"), cfg.env.get("_target_", ""))
        stamp = datetime.datetime.now().strftime("%Y-%m-%d_%H-%M-%S-%f")
        self.run_dir = run_dir or os.path.join(
            str(cfg.log_base_dir), f"{env_part}-{label('model')}-{label('algorithm')}-{label('runner')}", stamp)
        if os.path.isdir(os.path.join(self.run_dir, LATEST)):
            raise ConfigError(f"run_dir={self.run_dir!r} already holds a run: resume it with "
                              f"overrides={{'input_dir': {self.run_dir!r}}} and a new run_dir")
        self.echo = echo
        self.result: RunResult | None = None
        self._policy: tuple | None = None  # (the result, its best policy)

    def train(self, n_epochs: int | None = None) -> dict:
        """Trains `n_epochs` (default: the config's `algorithm.n_epochs`) more epochs; a second call continues
        from the first (the whole state, from the run directory). Returns the final evaluation's statistics."""
        done = self.result.progress.epoch if self.result else 0
        with open_dict(self.config):
            if n_epochs is not None:
                self.config.algorithm.n_epochs = done + int(n_epochs)
            self.config.input_dir = self.run_dir if self.result else ""
        self.result = run_training(self.config, self.run_dir, self.echo, self.env_spec, self.model)
        return self.result.final

    @property
    def policy(self) -> TrainedPolicy:
        """The best policy so far (call it with `compute_action`)."""
        if self.result is None:
            raise RuntimeError("RunContext.policy: nothing trained yet; call train() first")
        r = self.result
        if self._policy is None or self._policy[0] is not r:  # one object per result: it keeps a recurrent memory
            params = one_seed(policy_params(r.best_state), r.trainer.n_seeds, r.progress.seed_best_scores)
            self._policy = (r, TrainedPolicy(r.trainer.algorithm.policy, params, r.env_spec, self.config,
                                             r.progress.to_meta()))
        return self._policy[1]

    def compute_action(self, observation, deterministic: bool = True, key=None):
        """The best policy's action for one observation (or a batch); see `TrainedPolicy.compute_action`. A recurrent
        policy remembers what it has seen since `reset()`."""
        return self.policy.compute_action(observation, deterministic, key)

    def reset(self) -> None:
        """Starts a new episode for `compute_action`: a recurrent policy forgets what it has seen."""
        self.policy.reset()

    def evaluate(self, n_episodes: int = 100, deterministic: bool = True, seed: int = 0) -> dict:
        """Statistics (Maze's `eval_BaseEnvEvents/reward/...` tags) of `n_episodes` episodes of the best policy."""
        import jax

        policy = self.policy
        returns, lengths = policy.play(n_episodes, jax.random.key(seed), deterministic=deterministic)
        return {k: float(v) for k, v in episode_table(returns, lengths, "eval").items()}
