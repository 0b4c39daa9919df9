"""A policy: a flax network paired with the action distribution of the environment's action space."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import flax.linen as nn
import hydra.utils
import jax

from maze_jax.config import ConfigError
from maze_jax.models.distributions import distribution_for


@dataclass(frozen=True)
class Policy:
    """`network(params, obs)` gives distribution parameters for one observation; methods take batches."""

    network: Any
    dist: Any
    shared_value: bool = False  # the network's last output is a critic value (shared torso)

    def init(self, key, obs_example):
        return self.network.init(key, obs_example)

    def outputs(self, params, obs):
        """Distribution parameters for a batch of observations."""
        out = jax.vmap(self.network.apply, in_axes=(None, 0))(params, obs)
        return out[..., : self.dist.n_outputs] if self.shared_value else out

    def act(self, params, obs, key, deterministic: bool):
        """Environment actions for a batch of observations (the mode when deterministic)."""
        out = self.outputs(params, obs)
        action = self.dist.mode(out) if deterministic else self.dist.sample(key, out)
        return self.dist.to_env(action)


def _check_hidden_units(units) -> tuple:
    units = tuple(units)
    if not units or any(isinstance(u, bool) or not isinstance(u, int) or u <= 0 for u in units):
        raise ConfigError(f"model.hidden_units={list(units)!r}: expected a non-empty list of positive integers")
    return units


def instantiate_network(model_cfg: Any, n_outputs: int, section: str = "model", **overrides):
    """The config's `_target_` flax module with `n_outputs` outputs; other keys are its fields.

    `model_cfg` may also be a flax module already built (the Python API's objects): it is cloned with
    `n_outputs` and those of `overrides` that are its fields, so one module serves as policy and critic."""
    if isinstance(model_cfg, nn.Module):
        fields = {f.name for f in dataclasses.fields(model_cfg)}
        if "n_outputs" not in fields:
            raise ConfigError(f"{section}: the module {type(model_cfg).__name__} needs an `n_outputs` field "
                              "(the outputs the action distribution or the critic needs)")
        return model_cfg.clone(n_outputs=n_outputs, **{k: v for k, v in overrides.items() if k in fields})
    kwargs = {k: v for k, v in dict(model_cfg).items() if k != "_target_"}
    kwargs.update(overrides)
    if "hidden_units" in kwargs:
        kwargs["hidden_units"] = _check_hidden_units(kwargs["hidden_units"])
    target = model_cfg.get("_target_")
    try:
        module_cls = hydra.utils.get_object(target)
    except Exception as error:
        raise ConfigError(f"{section}._target_={target!r} cannot be imported: {error}") from None
    try:
        return module_cls(n_outputs=n_outputs, **kwargs)
    except TypeError as error:
        raise ConfigError(f"{section} config does not fit {target}: {error}") from None


def build_policy(model_cfg: Any, action_space, shared_value: bool = False) -> Policy:
    """The model config's network with the outputs the action space needs (plus a value if shared)."""
    dist = distribution_for(action_space)
    return Policy(instantiate_network(model_cfg, dist.n_outputs + int(shared_value)), dist, shared_value)
