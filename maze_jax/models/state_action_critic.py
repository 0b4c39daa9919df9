"""A state-action critic Q(s, a) (Maze's `critic=template_state_action` and `flatten_concat_state_action`).

For discrete actions the network sees the observation alone and gives one Q-value per action of every head
(Maze's `<action>_q_values`); for continuous actions it sees the observation and the action, and gives one Q-value.
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from maze_jax.config import ConfigError, positive_ints
from maze_jax.models.init import orthogonal
from maze_jax.models.mlp import activation, flatten_concat

DEFAULT_HIDDEN_UNITS = (256, 256)
"""Maze's `flatten_concat_state_action` width, used when neither the critic nor the model config names one."""


class StateActionCritic(nn.Module):
    """MLP from the flattened observation (and, for continuous actions, the flat action features) to `n_outputs`
    Q-values; one unbatched observation."""

    n_outputs: int
    hidden_units: Sequence[int] = DEFAULT_HIDDEN_UNITS
    non_lin: str = "Tanh"

    @nn.compact
    def __call__(self, obs, action=None):
        x = flatten_concat(obs)
        if action is not None:
            x = jnp.concatenate([x, jnp.ravel(action).astype(jnp.float32)])
        act = activation(self.non_lin)
        for units in self.hidden_units:
            x = act(nn.Dense(units, kernel_init=orthogonal(np.sqrt(2)))(x))
        return nn.Dense(self.n_outputs, kernel_init=orthogonal(1.0))(x)


def build_state_action_critic(model_cfg: Any, critic_cfg: Any, n_outputs: int) -> StateActionCritic:
    """The Q network from the `critic` group (`hidden_units`, `non_lin`; null takes the model's, so that
    `critic=template_state_action` mirrors the model as Maze's template does). A shared torso has no
    state-action form: SAC's critics are networks of their own."""
    critic_cfg = dict(critic_cfg or {})
    if critic_cfg.get("shared"):
        raise ConfigError("critic=shared (model=flatten_concat_shared_embedding chooses it) gives a state critic on "
                          "the policy's torso; SAC needs state-action critics of their own: "
                          "critic=template_state_action (or flatten_concat_state_action)")
    model = {k: getattr(model_cfg, k) for k in ("hidden_units", "non_lin") if hasattr(model_cfg, k)} \
        if isinstance(model_cfg, nn.Module) else dict(model_cfg or {})
    units = positive_ints(critic_cfg.get("hidden_units") or model.get("hidden_units") or DEFAULT_HIDDEN_UNITS,
                          "critic.hidden_units")
    non_lin = critic_cfg.get("non_lin") or model.get("non_lin") or "Tanh"
    activation(non_lin)  # a bad name is one line now, not at the first trace
    return StateActionCritic(n_outputs, units, str(non_lin))
