"""One network per sub-step of a structured env, as one flax module (one parameter tree per sub-step)."""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

from maze_jax.envs.structured import ACTOR_ID


class SubStepNetworks(nn.Module):
    """Network i sees sub-step i's observation keys. Policies concatenate every network's outputs (each sets its
    own action heads, the inactive ones are masked to point masses); critics (`pick_by_actor`) return the value
    of the network whose sub-step is acting."""

    networks: Sequence[nn.Module]
    observation_keys: Sequence[Sequence[str]]
    pick_by_actor: bool = False

    @nn.compact
    def __call__(self, obs):
        outs = [net({k: obs[k] for k in keys}) for net, keys in zip(self.networks, self.observation_keys)]
        if self.pick_by_actor:
            return jnp.stack(outs)[obs[ACTOR_ID]]
        return jnp.concatenate(outs, axis=-1)
