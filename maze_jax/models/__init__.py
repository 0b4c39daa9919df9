"""Policy networks (flax) and the action distributions that go with an action space."""

from maze_jax.models.actor_critic import ActorCritic, build_actor_critic
from maze_jax.models.cnn import PixelObsPolicy
from maze_jax.models.distributions import Categorical, DiagGaussian, distribution_for
from maze_jax.models.mlp import FlattenConcatPolicy
from maze_jax.models.pixel_rnn import PixelObsRecurrentPolicy
from maze_jax.models.policy import Policy, build_policy
from maze_jax.models.random_policy import RandomPolicy
from maze_jax.models.recurrent import RecurrentPolicy

__all__ = ["ActorCritic", "build_actor_critic", "Categorical", "DiagGaussian", "distribution_for",
           "FlattenConcatPolicy", "PixelObsPolicy", "PixelObsRecurrentPolicy", "Policy", "build_policy", "RandomPolicy",
           "RecurrentPolicy"]
