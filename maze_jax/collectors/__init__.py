"""Collectors feed an algorithm's learner with experience: the jitted scan over JAX envs (`jax_envs`, fused with
the update into one program per epoch) and the host collector that steps Python envs (`host`). Both give the shell
the same `Trainer`, so the loop, checkpoints and tables never ask which one runs."""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

from flax import struct

from maze_jax.algorithms import Algorithm


class EnvFailed(RuntimeError):
    """A Python env failed: it raised, its worker process died (`reason` "env-failed"), or it returned NaN or
    infinite observations or rewards ("non-finite"). The run stops and keeps its last complete checkpoint."""

    def __init__(self, message: str, reason: str = "env-failed"):
        super().__init__(message)
        self.reason = reason

    def __reduce__(self):  # the reason survives a trip between processes (a Ray worker's failure)
        return type(self), (str(self), self.reason)


class TrainState(struct.PyTreeNode):
    """Everything a training run checkpoints: the learner's state and the collector's (JAX envs mid-episode and
    their key; empty for Python envs, whose states live in their processes and are reset on resume)."""

    learner: Any
    envs: Any


class Trainer(NamedTuple):
    """What the shell's loop drives.

    init(agent_key, env_key, hyperparams=None) -> TrainState (the learner from the agent's key, the collector from
    the env's); train_epoch(state) -> (state, metrics by TensorBoard tag); evaluate(state, key) -> EpisodeStats of
    one episode per evaluation env (`eval_episodes` of them). With `n_seeds` > 1 every leaf has a leading seed axis.
    With `on_host`, train_epoch(state, should_stop) and evaluate(state, key, should_stop) step Python envs: they
    are called as they are, not compiled, and give None when `should_stop()` turned true before they finished;
    `epoch_env_steps()` then says how many env steps their envs have taken since the running epoch began (a long
    epoch's progress; a compiled epoch reports its steps when done, so 0).
    """

    algorithm: Algorithm
    init: Callable
    train_epoch: Callable
    evaluate: Callable
    eval_episodes: int
    n_seeds: int = 1
    on_host: bool = False
    close: Callable = lambda: None
    epoch_env_steps: Callable[[], int] = lambda: 0


def policy_params(state: TrainState):
    """The parameters of the policy being trained (every algorithm keeps them in `params["policy"]`)."""
    return state.learner.params["policy"]
