"""Population-based training from the command line (`+experiment=pbt`, or a `pbt:` block): the run's members
(`runner.n_seeds`, trained in one program) are a population whose hyperparameters evolve.

The population starts spread around the algorithm config's values (each explored hyperparameter times a
log-uniform factor in [1 / init_spread, init_spread]); every `interval` epochs the worst `fraction` of the members
(by the epoch's evaluation mean) copy the whole state of one of the best and perturb the explored hyperparameters
(`algorithms.pbt.exploit_and_explore`). Each member's hyperparameters go to TensorBoard every epoch
(`member_<i>/hparams/<name>`) and, at the end, to `pbt_schedule.png`. The best member's model is the run's best
model (the rollout's default). The keys derive from the agent seed and the epoch: a run is repeatable, and a resume
(which keeps the evolved hyperparameters) goes on bit for bit.
"""

from __future__ import annotations

import functools
import math
import os
from typing import Any, Mapping, NamedTuple

import jax
import numpy as np

from maze_jax.algorithms.pbt import exploit_and_explore, spread
from maze_jax.config import ConfigError, read
from maze_jax.shell.files import open_for_writing
from maze_jax.shell.grid import sweepable_keys

SCHEDULE_FILE = "pbt_schedule.png"
# what PBT explores when `pbt.explore` is null: the learning rate and the exploration coefficient the algorithm has
DEFAULT_EXPLORED = ("lr", "optimizer.step_size", "entropy_coef", "noise_stddev")


class PbtSettings(NamedTuple):
    """`pbt`'s settings: `keys` (the explored keys of the algorithm group) and `explored` (their hyperparameters)."""

    interval: int
    fraction: float
    factors: tuple
    init_spread: float
    keys: tuple
    explored: tuple


def read_pbt(pbt: Mapping | None, algorithm: Mapping, settings: Any, n_members: int) -> PbtSettings | None:
    """The `pbt` block, checked (None when absent): `settings` are the algorithm's read settings, `n_members` the
    population (`runner.n_seeds`)."""
    if not pbt:
        return None
    if not hasattr(settings, "hyperparams"):
        raise ConfigError(f"pbt: the algorithm {type(settings).__name__} has no traced hyperparameters to evolve")
    if n_members < 2:
        raise ConfigError(f"pbt: a population needs at least 2 members, runner.n_seeds={n_members} (e.g. 8)")
    sweepable = sweepable_keys(algorithm, settings)
    keys = pbt.get("explore") or [key for key in DEFAULT_EXPLORED if key in sweepable]
    keys = [keys] if isinstance(keys, str) else list(keys)
    for key in keys:
        if key not in sweepable:
            raise ConfigError(f"pbt.explore: {key} is not a traced hyperparameter of the algorithm group. Keys that "
                              f"can be explored: {', '.join(sweepable)}")
    factors = pbt.get("perturb_factors")
    if not isinstance(factors, (list, tuple)) or not factors or \
            any(isinstance(f, bool) or not isinstance(f, (int, float)) or not f > 0 for f in factors):
        raise ConfigError(f"pbt.perturb_factors={factors!r}: expected a list of positive numbers, e.g. [0.8, 1.25]")
    return PbtSettings(interval=read(pbt, "interval", int, "pbt", low=1),
                       fraction=read(pbt, "fraction", float, "pbt", low=0.0, high=0.5, low_inclusive=False),
                       factors=tuple(float(f) for f in factors),
                       init_spread=read(pbt, "init_spread", float, "pbt", low=1.0), keys=tuple(keys),
                       explored=tuple(key.rpartition(".")[2] for key in keys))


def initial_population(learner, pbt: PbtSettings, key: jax.Array):
    """A fresh population's learner states, their hyperparameters spread around the config's (`key`: the
    population's; the exploit steps fold in their epoch, from 1 on, this one 0)."""
    return learner.replace(hparams=spread(learner.hparams, jax.random.fold_in(key, 0), pbt.explored, pbt.init_spread))


def member_names(n_members: int) -> list[str]:
    return [f"member_{i}" for i in range(n_members)]


class Population:
    """The loop's `adapt` step (exploit and explore every `interval` epochs; each member's hyperparameters in the
    epoch's rows) and a listener that draws the schedule at the end. `history`: a resumed run's parent's scalars."""

    def __init__(self, pbt: PbtSettings, n_members: int, key: jax.Array, run_dir: str | None,
                 score_row: str, history: list = (), echo=print):
        self.pbt, self.key, self.run_dir, self.score_row, self.echo = pbt, key, run_dir, score_row, echo
        self.names = member_names(n_members)
        self.step = jax.jit(functools.partial(exploit_and_explore, explored=pbt.explored, fraction=pbt.fraction,
                                              factors=pbt.factors))
        self.schedule: dict[str, dict[int, np.ndarray]] = {name: {} for name in pbt.explored}  # epoch -> values
        for tag, value, step, _ in history:
            member, _, rest = tag.partition("/hparams/")
            if rest in self.schedule and member in self.names:
                self.schedule[rest].setdefault(step, np.full(n_members, math.nan))[self.names.index(member)] = value

    def __call__(self, loop, metrics: dict) -> list[str]:
        epoch, messages = loop.progress.epoch, []
        if epoch % self.pbt.interval == 0:
            scores = np.asarray(metrics.get(self.score_row, np.full(len(self.names), np.nan)), np.float32)
            learner, source = self.step(loop.state.learner, scores, jax.random.fold_in(self.key, epoch))
            loop.state = loop.state.replace(learner=learner)
            copies = [f"{self.names[i]} <- {self.names[int(s)]}" for i, s in enumerate(jax.device_get(source))
                      if int(s) != i]
            messages.append(f"-> PBT: copied from better members and perturbed: {', '.join(copies)}")
        hparams = jax.device_get(loop.state.learner.hparams)
        for name in self.pbt.explored:
            values = np.asarray(getattr(hparams, name), np.float64)
            self.schedule[name][epoch] = values
            loop.seed_rows.update({f"{member}/hparams/{name}": float(v) for member, v in zip(self.names, values)})
        return messages

    def on_epoch(self, loop, rows: dict) -> None:
        pass

    def on_end(self, loop, reason: str) -> None:
        if self.run_dir is None or not any(self.schedule.values()):
            return
        draw_schedule(os.path.join(self.run_dir, SCHEDULE_FILE), self.schedule, self.pbt)
        scores = loop.progress.seed_best_scores
        if scores:
            best = int(np.nanargmax(scores))
            hparams = jax.device_get(loop.state.learner.hparams)
            now = ", ".join(f"{key}={float(getattr(hparams, name)[best]):.4g}"
                            for key, name in zip(self.pbt.keys, self.pbt.explored))
            self.echo(f"PBT: the best member is {self.names[best]} (best evaluation mean {scores[best]:.3f}); its "
                      f"hyperparameters now: {now} ({SCHEDULE_FILE} shows every member's)", flush=True)


def draw_schedule(path: str, schedule: dict, pbt: PbtSettings) -> None:
    """One panel per explored hyperparameter: every member's value against the epoch (log scale)."""
    from maze_jax.shell.pictures import _figure

    fig = _figure(8, 2.6 * len(schedule) + 0.6)
    axes = fig.subplots(len(schedule), 1, squeeze=False)[:, 0]
    for ax, (name, key) in zip(axes, zip(schedule, pbt.keys)):
        epochs = sorted(schedule[name])
        values = np.stack([schedule[name][e] for e in epochs])
        for member in range(values.shape[1]):
            ax.plot(epochs, values[:, member], drawstyle="steps-post", linewidth=1)
        ax.set_yscale("log")
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel("epoch")
    axes[0].set_title(f"PBT: {values.shape[1]} members, exploit and explore every {pbt.interval} epochs", fontsize=9)
    fig.tight_layout()
    with open_for_writing(path, "wb") as f:
        fig.savefig(f, dpi=80, format="png")
