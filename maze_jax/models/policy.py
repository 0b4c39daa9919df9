"""A policy: a flax network paired with the action distribution of the environment's action space."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import flax.linen as nn
import jax

from maze_jax.config import ConfigError, import_object, positive_ints
from maze_jax.envs.structured import sub_steps
from maze_jax.models.distributions import distribution_for
from maze_jax.models.masking import HeadMasks, head_masks
from maze_jax.models.recurrent import batch_memory, call_network, is_recurrent
from maze_jax.models.sub_steps import SubStepNetworks


@dataclass(frozen=True)
class Policy:
    """`network(params, obs)` gives distribution parameters for one observation; methods take batches.

    A recurrent network (`models.recurrent`) also takes and returns each env's memory: `act_with_memory` carries
    it from step to step, and `initial_memory(n)` starts `n` envs' episodes (`()` for a network without one)."""

    network: Any
    dist: Any
    shared_value: bool = False  # the network's last output is a critic value (shared torso)
    masks: HeadMasks | None = None  # the env's action masks and sub-step structure, applied to the outputs

    @property
    def recurrent(self) -> bool:
        return is_recurrent(self.network)

    def initial_memory(self, n: int):
        """The memory of `n` envs at their episodes' start (leading env axis); `()` without a recurrent network."""
        return batch_memory(self.network.initial_memory(), n) if self.recurrent else ()

    def init(self, key, obs_example):
        if self.recurrent:
            return self.network.init(key, obs_example, self.network.initial_memory())
        return self.network.init(key, obs_example)

    def head(self, out, obs):
        """The distribution parameters in a network output `out` for one observation, masks applied."""
        out = out[..., : self.dist.n_outputs]
        return out if self.masks is None else self.masks(out, obs)

    def apply_with_memory(self, params, obs, memory):
        """Distribution parameters for one observation and its env's memory: (outputs, the memory after it)."""
        out, memory = call_network(self.network, params, obs, memory)
        return self.head(out, obs), memory

    def apply(self, params, obs):
        """Distribution parameters for one observation (a recurrent network: as the first of an episode)."""
        initial = self.network.initial_memory() if self.recurrent else ()
        return self.apply_with_memory(params, obs, initial)[0]

    def outputs(self, params, obs):
        """Distribution parameters for a batch of observations."""
        return jax.vmap(self.apply, in_axes=(None, 0))(params, obs)

    def act_with_memory(self, params, obs, key, deterministic: bool, memory):
        """Environment actions for a batch of observations and their envs' memories (the mode when
        deterministic): (actions, memories after them)."""
        out, memory = jax.vmap(self.apply_with_memory, in_axes=(None, 0, 0))(params, obs, memory)
        action = self.dist.mode(out) if deterministic else self.dist.sample(key, out)
        return self.dist.to_env(action), memory

    def act(self, params, obs, key, deterministic: bool):
        """Environment actions for a batch of observations (a recurrent policy: each its episode's first)."""
        n = jax.tree.leaves(obs)[0].shape[0]
        return self.act_with_memory(params, obs, key, deterministic, self.initial_memory(n))[0]


def instantiate_network(model_cfg: Any, n_outputs: int, section: str = "model", optional: dict | None = None,
                        **overrides):
    """The config's `_target_` flax module with `n_outputs` outputs; other keys are its fields, `overrides`
    replace them, and `optional` fields (such as a critic's `output_scale`) are set where the module has them.

    `model_cfg` may also be a flax module already built (the Python API's objects): it is cloned with
    `n_outputs` and those of `overrides` that are its fields, so one module serves as policy and critic."""
    overrides = {**(optional or {}), **overrides}
    if isinstance(model_cfg, nn.Module):
        fields = {f.name for f in dataclasses.fields(model_cfg)}
        if "n_outputs" not in fields:
            raise ConfigError(f"{section}: the module {type(model_cfg).__name__} needs an `n_outputs` field "
                              "(the outputs the action distribution or the critic needs)")
        return model_cfg.clone(n_outputs=n_outputs, **{k: v for k, v in overrides.items() if k in fields})
    kwargs = {k: v for k, v in dict(model_cfg).items() if k not in ("_target_", "box_distribution")}
    kwargs.update(overrides)
    if "hidden_units" in kwargs:
        kwargs["hidden_units"] = positive_ints(kwargs["hidden_units"], f"{section}.hidden_units")
    target = model_cfg.get("_target_")
    module_cls = import_object(target, f"{section}._target_")
    if dataclasses.is_dataclass(module_cls):
        fields = {f.name for f in dataclasses.fields(module_cls)}
        kwargs = {k: v for k, v in kwargs.items() if k in fields or k not in (optional or {})}
    try:
        return module_cls(n_outputs=n_outputs, **kwargs)
    except TypeError as error:
        raise ConfigError(f"{section} config does not fit {target}: {error}") from None


def sub_step_config(model_cfg: Any, name: str | None):
    """The network config of sub-step `name`: `model.networks.<name>` if the model names one, else the model's own
    config (without `networks`). Flax module objects serve every sub-step."""
    if isinstance(model_cfg, nn.Module):
        return model_cfg
    networks = model_cfg.get("networks") or {}
    if name in networks:
        return networks[name]
    return {k: v for k, v in dict(model_cfg).items() if k != "networks"}


def build_networks(model_cfg: Any, env, n_outputs: list[int], section: str, pick_by_actor: bool = False,
                   optional: dict | None = None, **overrides):
    """The network of a flat env (`n_outputs` has one entry), or a SubStepNetworks with one network per sub-step."""
    steps = sub_steps(env)
    if not steps:
        return instantiate_network(sub_step_config(model_cfg, None), n_outputs[0], section, optional, **overrides)
    named = {} if isinstance(model_cfg, nn.Module) else (model_cfg.get("networks") or {})
    unknown = set(named) - {s.name for s in steps}
    if unknown:
        raise ConfigError(f"{section}.networks names sub-steps {sorted(unknown)}; the env's sub-steps are "
                          f"{[s.name for s in steps]}")
    networks = tuple(instantiate_network(sub_step_config(model_cfg, step.name), n, f"{section}.networks.{step.name}",
                                         optional, **overrides) for step, n in zip(steps, n_outputs))
    if any(is_recurrent(network) for network in networks):
        raise ConfigError(f"{section}: recurrent networks are not available for structured envs (sub-steps); "
                          "use a feed-forward model")
    return SubStepNetworks(networks, tuple(tuple(s.observation_keys) for s in steps), pick_by_actor)


def action_distribution(env_spec, box: str = "gaussian"):
    """The distribution of the env's action space; a structured env's heads in sub-step order; `box`: of Box heads."""
    order = tuple(k for step in sub_steps(env_spec.env) for k in step.action_keys) or None
    return distribution_for(env_spec.env.action_space(env_spec.params), order, box)


def box_distribution(model_cfg: Any, auto: str = "gaussian") -> str:
    """The model config's `box_distribution`. Where it says `auto` (the default of flatten_concat and pixel_obs, and
    of flax module objects), the algorithm's choice, given as `auto`: the clipped Gaussian unless the algorithm needs
    another (SAC: `algorithms.sac.BOX_DISTRIBUTION`)."""
    value = "auto" if isinstance(model_cfg, nn.Module) else str(model_cfg.get("box_distribution") or "auto")
    return auto if value == "auto" else value


def build_policy(model_cfg: Any, env_spec, shared_value: bool = False, box_auto: str = "gaussian") -> Policy:
    """The model config's network(s) with the outputs the env's action space needs (plus a value if shared),
    one network per sub-step for a structured env, with the env's action masks; Box heads as the model says, or
    `box_auto` where it says `auto`."""
    env = env_spec.env
    steps = sub_steps(env)
    dist = action_distribution(env_spec, box_distribution(model_cfg, box_auto))
    if not steps:
        return Policy(build_networks(model_cfg, env, [dist.n_outputs + int(shared_value)], "model"), dist,
                      shared_value, head_masks(dist, env))
    if shared_value:
        raise ConfigError("critic=shared (model=flatten_concat_shared_embedding chooses it) is not available for "
                          "structured envs (one critic per sub-step): use critic=separate")
    sizes = dict(zip([name for name, _ in dist.heads], [d.n_outputs for _, d in dist.heads]))
    n_outputs = [sum(sizes[k] for k in step.action_keys) for step in steps]
    return Policy(build_networks(model_cfg, env, n_outputs, "model"), dist, False, head_masks(dist, env))
