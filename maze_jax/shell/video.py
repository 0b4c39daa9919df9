"""Videos of episodes (`runner.render=true` of a rollout): animated GIFs, one per episode, a frame per step plus the
first. Envs that can draw themselves: gymnasium envs with an `rgb_array` render mode, JAX envs with a
`render_frame(state, params) -> (H, W, 3) uint8` method (the 2D cutting env), and gymnax's classic-control envs,
which their gymnasium twins draw from gymnax's state. GIFs are written with Pillow, which
matplotlib already brings: no video codec to install."""

from __future__ import annotations

import os
from typing import Any, Callable

import jax
import numpy as np

from maze_jax.config import ConfigError


def innermost(env) -> Any:
    """The env under maze_jax's wrappers (normalisation, time limits): the one that may know how to draw."""
    while hasattr(env, "env") and not hasattr(env, "render_frame"):
        env = env.env
    return env


# gymnax's classic-control envs, drawn by their gymnasium twins: the twin's state (and extras) from gymnax's state
TWINS = {
    "CartPole-v1": lambda s: {"state": np.array([s.x, s.x_dot, s.theta, s.theta_dot], np.float64)},
    "Acrobot-v1": lambda s: {"state": np.array([s.joint_angle1, s.joint_angle2, s.velocity_1, s.velocity_2])},
    "Pendulum-v1": lambda s: {"state": np.array([s.theta, s.theta_dot]), "last_u": float(s.last_u)},
    "MountainCar-v0": lambda s: {"state": np.array([s.position, s.velocity])},
    "MountainCarContinuous-v0": lambda s: {"state": np.array([s.position, s.velocity])},
}


def twin_drawer(name: str) -> Callable:
    """`draw(state, params) -> frame` of gymnax's `name`, by gymnasium's env of that id: the gymnax state is set as
    the twin's and the twin draws it (rgb_array)."""
    import gymnasium

    _quiet_drawing()
    twin = gymnasium.make(name, render_mode="rgb_array").unwrapped
    twin.reset(seed=0)
    as_twin = TWINS[name]

    def draw(state, params):
        for attribute, value in as_twin(jax.device_get(state)).items():
            setattr(twin, attribute, value)
        return twin.render()

    draw.close = twin.close  # its window surface, when the episode is drawn
    return draw


def _quiet_drawing() -> None:
    os.environ.setdefault("SDL_AUDIODRIVER", "dummy")  # pygame (gymnasium's drawing) needs no sound card ...
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # ... nor a display for rgb_array frames (SDL complains)
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")


def frame_source(env_spec) -> str:
    """How the env draws: "gymnasium", "jax", or a ConfigError saying that it cannot."""
    if env_spec.is_python:
        if env_spec.env.envpool_id is not None:
            raise ConfigError(f"runner.render: {env_spec.name} runs on envpool, which cannot draw; use env=gymnasium")
        probe = env_spec.env.make_one()
        try:
            modes = list((getattr(probe.unwrapped, "metadata", None) or {}).get("render_modes") or [])
        finally:
            probe.close()
        if "rgb_array" in modes:
            return "gymnasium"
        raise ConfigError(f"runner.render: env {env_spec.name} cannot draw itself: its metadata's render_modes "
                          f"{modes} lack rgb_array (a gymnasium env draws frames with render_mode='rgb_array')")
    if hasattr(innermost(env_spec.env), "render_frame") or env_spec.name in TWINS:
        return "jax"
    raise ConfigError(f"runner.render: env {env_spec.name} cannot draw itself (gymnasium envs with an rgb_array "
                      "render mode, JAX envs with a render_frame method, and gymnax's "
                      f"{', '.join(TWINS)} through gymnasium can)")


def python_episode(trained, key: jax.Array, deterministic: bool, seed: int) -> tuple[list, float]:
    """One episode of a gymnasium env, drawn: (frames, return)."""
    _quiet_drawing()
    env = trained.env_spec.env.make_one()
    try:
        env.unwrapped.render_mode = "rgb_array"  # set after construction: the env was made for training
        obs, _ = env.reset(seed=seed)
        frames, total, done = [env.render()], 0.0, False
        while not done:
            key, act_key = jax.random.split(key)
            action = trained.compute_action(obs, deterministic, act_key)
            obs, reward, terminated, truncated, _ = env.step(action)
            frames.append(env.render())
            total, done = total + float(reward), bool(terminated or truncated)
        return frames, total
    finally:
        env.close()


def jax_episode(trained, key: jax.Array, deterministic: bool) -> tuple[list, float]:
    """One episode of a JAX env, stepped one by one on the host and drawn with its `render_frame` (or its gymnasium
    twin): (frames, return). Ends at termination or the env's time limit."""
    spec = trained.env_spec
    draw = getattr(innermost(spec.env), "render_frame", None) or twin_drawer(spec.name)
    try:
        return _drawn_jax_episode(trained, key, deterministic, draw)
    finally:
        getattr(draw, "close", lambda: None)()


def _drawn_jax_episode(trained, key: jax.Array, deterministic: bool, draw: Callable) -> tuple[list, float]:
    spec = trained.env_spec
    env, params = spec.env, spec.params
    reset, step, final_step = jax.jit(env.reset), jax.jit(env.step), jax.jit(innermost(env).step_env)
    act = jax.jit(trained.policy.act, static_argnums=3)
    key, reset_key = jax.random.split(key)
    obs, state = reset(reset_key, params)
    frames, total = [draw(inner_state(state), params)], 0.0
    for _ in range(spec.horizon):
        key, act_key, step_key = jax.random.split(key, 3)
        action = jax.tree.map(lambda a: a[0], act(trained.params, jax.tree.map(lambda x: x[None], obs), act_key,
                                                  deterministic))
        obs, next_state, reward, terminated, truncated, info = step(step_key, state, action, params)
        total += float(reward)
        if bool(terminated | truncated):  # the returned state is the next episode's: draw the ended one's last
            final = final_step(step_key, inner_state(state), action, params)[1]
            frames.append(draw(final, params))
            break
        state = next_state
        frames.append(draw(inner_state(state), params))
    return frames, total


def inner_state(state):
    """The innermost env's state under wrapper states (gymnax's wrappers keep it as `env_state`)."""
    while hasattr(state, "env_state"):
        state = state.env_state
    return state


def save_gif(path: str, frames: list, fps: int = 20) -> None:
    """`frames` ((H, W, 3) uint8 arrays) as an animated GIF that loops, each numbered in its bottom-left corner
    (which also keeps GIF encoders from merging two identical frames into one)."""
    from PIL import Image, ImageDraw

    images = [Image.fromarray(np.asarray(frame, np.uint8)).convert("RGB") for frame in frames]
    for i, image in enumerate(images):
        ImageDraw.Draw(image).text((4, image.height - 14), f"frame {i}", fill=(200, 0, 0))
    images[0].save(path, save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0)


def record_episodes(trained, n_episodes: int, key: jax.Array, deterministic: bool, out_dir: str,
                    echo: Callable = print) -> list[str]:
    """`n_episodes` drawn episodes as `episode_<i>.gif` in `out_dir`; returns their paths."""
    source = frame_source(trained.env_spec)
    paths = []
    for i in range(n_episodes):
        episode_key = jax.random.fold_in(key, i)
        if source == "gymnasium":
            frames, total = python_episode(trained, episode_key, deterministic, seed=i)
        else:
            frames, total = jax_episode(trained, episode_key, deterministic)
        path = os.path.join(out_dir, f"episode_{i}.gif")
        save_gif(path, frames)
        echo(f"Video of episode {i} ({len(frames) - 1} steps, return {total:g}): {os.path.abspath(path)}", flush=True)
        paths.append(path)
    return paths
