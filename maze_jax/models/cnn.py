"""Maze's `pixel_obs` model: image observations through a CNN torso, the rest flattened beside it, then an MLP.

An observation of rank 3 (height, width, channels; or channels first, as frame stacks come) or 2 (height, width) is
an image; integer images (uint8 pixels) are scaled to [0, 1]. In a dict observation every image key gets its own
torso and the other keys are flattened and concatenated after the images' features, in sorted key order, as
`flatten_concat` does.

On a CPU the convolutions are computed as matrix products of image patches (`patches`): XLA's CPU convolutions
inside the epoch's loops run about 8 times slower than outside them (PPO's gradient of this torso on 256 MinAtar
frames: 182 ms a step in a scan against 22 ms as patch products), while matrix products keep their speed. On GPUs
and TPUs `lax.conv_general_dilated` runs them. The parameters are the same either way (a kernel of shape
(k, k, channels in, channels out)), so checkpoints move between machines.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from maze_jax.config import ConfigError, positive_ints
from maze_jax.models.init import orthogonal
from maze_jax.models.mlp import activation, flatten_concat


IMAGE_LAYOUTS = ("auto", "hwc", "chw")


def channels_first(shape: tuple, layout: str) -> bool:
    """Whether an image of `shape` holds its channels on its first axis: `chw`, or `auto` with at most 4 entries
    there and more on each other axis (gymnasium's and envpool's Atari frame stacks (4, 84, 84), PyTorch's (3, H,
    W)); `hwc` and every other shape (MinAtar's (10, 10, C)) hold them last."""
    if len(shape) != 3 or layout == "hwc":
        return False
    return layout == "chw" or shape[0] <= 4 and shape[0] < min(shape[1], shape[2])


def channels_first_images(obs, layout: str) -> list[tuple[str, tuple]]:
    """(key, shape) of each image of `obs` (one observation: a dict, key "" for an array) that `layout` reads as
    channels first."""
    items = sorted(obs.items()) if isinstance(obs, dict) else [("", obs)]
    return [(key, tuple(np.shape(x))) for key, x in items if np.ndim(x) == 3 and channels_first(np.shape(x), layout)]


def as_image(x: jax.Array, layout: str = "auto") -> jax.Array:
    """(H, W), (H, W, C) or (C, H, W) (`channels_first`) as float (H, W, C); integer pixels scaled to [0, 1], bools
    to 0/1."""
    if x.ndim == 2:
        x = x[..., None]
    elif channels_first(x.shape, layout):
        x = jnp.moveaxis(x, 0, -1)
    if jnp.issubdtype(x.dtype, jnp.integer):
        return x.astype(jnp.float32) / float(jnp.iinfo(x.dtype).max)
    return x.astype(jnp.float32)


def same_padding(size: int, k: int, s: int) -> tuple[int, int]:
    """XLA's 'SAME' padding of one axis: (before, after) so that the output has ceil(size / s) positions."""
    total = max((-(-size // s) - 1) * s + k - size, 0)
    return total // 2, total - total // 2


def patches(x: jax.Array, k: int, s: int) -> jax.Array:
    """(H, W, C) -> (ceil(H / s), ceil(W / s), k * k * C): every k x k window ('SAME' padding, stride s), its
    features ordered as a (k, k, C) kernel flattens."""
    h, w, _ = x.shape
    out_h, out_w = -(-h // s), -(-w // s)
    x = jnp.pad(x, (same_padding(h, k, s), same_padding(w, k, s), (0, 0)))
    return jnp.concatenate([x[i:i + (out_h - 1) * s + 1:s, j:j + (out_w - 1) * s + 1:s]
                            for i in range(k) for j in range(k)], axis=-1)


class Conv(nn.Module):
    """A 2D convolution ('SAME' padding) of one (H, W, C) image: patch products on a CPU, XLA's convolution
    elsewhere (`use_patches` None: chosen by the default backend)."""

    features: int
    kernel_size: int
    stride: int = 1
    use_patches: bool | None = None

    @nn.compact
    def __call__(self, x):
        k, s = self.kernel_size, self.stride
        kernel = self.param("kernel", orthogonal(np.sqrt(2)), (k, k, x.shape[-1], self.features))
        bias = self.param("bias", nn.initializers.zeros, (self.features,))
        use_patches = jax.default_backend() == "cpu" if self.use_patches is None else self.use_patches
        if use_patches:
            return patches(x, k, s) @ kernel.reshape(-1, self.features) + bias
        padding = [same_padding(x.shape[0], k, s), same_padding(x.shape[1], k, s)]
        y = jax.lax.conv_general_dilated(x[None], kernel, (s, s), padding,
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"))
        return y[0] + bias


def is_image(x) -> bool:
    return jnp.ndim(x) in (2, 3)


class PixelObsPolicy(nn.Module):
    """CNN torso per image (convolutions `channels`, `kernel_sizes`, `strides`, 'SAME' padding), then an MLP
    (`hidden_units`) to `n_outputs` distribution parameters; one unbatched observation. `image_layout` says where an
    image holds its channels (`auto`, `hwc`, `chw`: see `channels_first`). Orthogonal initialisation with a small
    last layer, as `FlattenConcatPolicy`."""

    n_outputs: int
    channels: Sequence[int] = (16, 32)
    kernel_sizes: Sequence[int] = (3, 3)
    strides: Sequence[int] = (1, 1)
    hidden_units: Sequence[int] = (256,)
    non_lin: str = "ReLU"
    image_layout: str = "auto"
    output_scale: float = 0.01

    @nn.compact
    def __call__(self, obs):
        x = pixel_features(self, obs)
        return nn.Dense(self.n_outputs, kernel_init=orthogonal(self.output_scale))(x)


def pixel_features(module: nn.Module, obs):
    """The torso's features of one observation, its layers made inside `module`'s compact call (so that they take
    its names): every image through the convolutions of `module.channels`, `kernel_sizes` and `strides`, the other
    keys flattened beside them, then dense layers of `module.hidden_units` (non-linearity `module.non_lin`)."""
    for key in ("channels", "kernel_sizes", "strides"):
        positive_ints(getattr(module, key), f"model.{key}")
    if not (len(module.channels) == len(module.kernel_sizes) == len(module.strides)) or not module.channels:
        raise ConfigError(f"model.channels, kernel_sizes and strides need one entry per convolution each: got "
                          f"{list(module.channels)}, {list(module.kernel_sizes)}, {list(module.strides)}")
    if module.image_layout not in IMAGE_LAYOUTS:
        raise ConfigError(f"model.image_layout={module.image_layout!r} is unknown. Valid: {', '.join(IMAGE_LAYOUTS)}")
    act = activation(module.non_lin)
    items = sorted(obs.items()) if isinstance(obs, dict) else [("obs", obs)]
    images = [(k, v) for k, v in items if is_image(v)]
    if not images:
        raise ConfigError("model=pixel_obs (and pixel_obs_rnn) needs an image observation (rank 2 or 3); this env's "
                          "observations are vectors: use model=flatten_concat or model=vector_obs (or vector_obs_rnn)")
    features = []
    for key, image in images:
        x = as_image(image, module.image_layout)
        for i, (c, k, s) in enumerate(zip(module.channels, module.kernel_sizes, module.strides)):
            x = act(Conv(int(c), int(k), int(s), name=f"{key}_conv_{i}")(x))
        features.append(x.reshape(-1))
    rest = {k: v for k, v in items if not is_image(v)}
    if rest:
        features.append(flatten_concat(rest))
    x = jnp.concatenate(features)
    for units in module.hidden_units:
        x = act(nn.Dense(units, kernel_init=orthogonal(np.sqrt(2)))(x))
    return x


class PixelTorso(nn.Module):
    """`pixel_features` as a module of its own: the convolutions and dense layers of a recurrent pixel model."""

    channels: Sequence[int]
    kernel_sizes: Sequence[int]
    strides: Sequence[int]
    hidden_units: Sequence[int]
    non_lin: str
    image_layout: str

    @nn.compact
    def __call__(self, obs):
        return pixel_features(self, obs)
