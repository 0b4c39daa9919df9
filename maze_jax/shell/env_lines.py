"""What a run says about its env before it trains: what steps it, and what in its spaces deserves a warning."""

from __future__ import annotations

import jax
import numpy as np


def stepped_by(env_spec) -> str:
    """One line: the env and what steps it (JAX inside the compiled epoch; envpool's C++ batch; gymnasium's class or
    one's own, in Python)."""
    env = env_spec.env
    if not env_spec.is_python:
        suite = type(env).__module__.split(".")[0]
        return f"Env {env_spec.name}: a JAX env ({suite}), stepped inside the compiled programs"
    if env.envpool_id is not None:
        return f"Env {env_spec.name}: envpool's C++ env, stepped in batches by envpool"
    owner = "gymnasium's" if env.env_class.startswith("gymnasium.") else "your own"
    return f"Env {env_spec.name}: {owner} class {env.env_class}, stepped in Python"


def unbounded_action_note(env_spec) -> str:
    """'' unless an action space is a Box with an infinite bound: then a line saying what the policy does there."""
    spaces = [env_spec.env.action_space(env_spec.params)]
    unbounded = []
    while spaces:
        space = spaces.pop()
        if hasattr(space, "spaces"):
            spaces += list(dict(space.spaces).values())
        elif hasattr(space, "low") and hasattr(space, "high") and not (
                np.all(np.isfinite(jax.device_get(space.low))) and np.all(np.isfinite(jax.device_get(space.high)))):
            unbounded.append(f"Box{tuple(np.shape(space.low)) or tuple(space.shape)}")
    if not unbounded:
        return ""
    return (f"Warning: the action space {', '.join(unbounded)} has no bounds: the policy's Gaussian actions are "
            "unbounded too (give the env's Box its real bounds, so that actions are squashed into them)")
