"""Maze's `pixel_obs_rnn` model: `pixel_obs`'s torso (a CNN per image, the other keys flattened beside it, then
dense layers), a recurrent cell (GRU or LSTM) that carries a memory from step to step, then the output layer. It is
`vector_obs_rnn` (`models.recurrent`) with the CNN torso as its feature block, so rollouts, sequence replays and
checkpoints treat it alike."""

from __future__ import annotations

from typing import Sequence

from maze_jax.models.cnn import PixelObsPolicy, PixelTorso
from maze_jax.models.recurrent import RecurrentPolicy


class PixelObsRecurrentPolicy(RecurrentPolicy):
    """Convolutions `channels`, `kernel_sizes`, `strides` per image ('SAME' padding; `image_layout` as
    `PixelObsPolicy`), dense `hidden_units`, a `cell` of `memory_units`, then a dense layer to `n_outputs`; one
    unbatched observation and its env's memory."""

    channels: Sequence[int] = PixelObsPolicy.channels  # the torso's defaults are pixel_obs's
    kernel_sizes: Sequence[int] = PixelObsPolicy.kernel_sizes
    strides: Sequence[int] = PixelObsPolicy.strides
    hidden_units: Sequence[int] = PixelObsPolicy.hidden_units
    non_lin: str = PixelObsPolicy.non_lin
    image_layout: str = PixelObsPolicy.image_layout

    def setup_features(self):
        self.torso = PixelTorso(self.channels, self.kernel_sizes, self.strides, self.hidden_units, self.non_lin,
                                self.image_layout)

    def encode(self, obs):
        """The torso's features of one observation."""
        return self.torso(obs)
