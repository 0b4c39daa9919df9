"""One training run from a composed config, in named steps: read the settings, prepare the run directory, build
env and trainer, restore or init, loop, final evaluation. The CLI and `RunContext` both run through here."""

from __future__ import annotations

import math
import os
import sys
import threading
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from omegaconf import DictConfig, OmegaConf

from maze_jax.algorithms.metrics import REWARD, episode_table
from maze_jax.collectors import Trainer, TrainState
from maze_jax.config import ConfigError
from maze_jax.envs import EnvSpec, as_env_spec, build_env
from maze_jax.envs.structured import sub_steps
from maze_jax.models.cnn import channels_first_images
from maze_jax.shell.assembly import build_algorithm, build_trainer
from maze_jax.shell.checkpoints import BEST, LATEST, CheckpointDir, NoCheckpoints, fit_arrays, place_like
from maze_jax.shell.env_lines import stepped_by, unbounded_action_note
from maze_jax.shell.files import open_for_writing, refuse_links
from maze_jax.shell.listeners import Checkpoints, ConsoleTable, TensorBoard
from maze_jax.shell.loop import (EpisodeProgress, LoopOptions, LoopState, Progress, TrainingLoop, evaluate_polling,
                                 play_in_batches, unfinished_note, write_error)
from maze_jax.shell.event_history import scalar_history
from maze_jax.shell.grid import count_configs
from maze_jax.shell.grid_report import GridTable, report
from maze_jax.shell.pbt import Population, initial_population, member_names
from maze_jax.shell.pictures import NETWORKS_FILE, LearningCurve, curve_history, describe_actions, draw_networks
from maze_jax.shell.programs import Compilation, Programs, enable_compilation_cache
from maze_jax.shell.progress import ProgressLine
from maze_jax.shell.resume import read_first_usable, stored_statistics
from maze_jax.shell.settings import CONFIG_FILE, RunSettings, load_yaml, plain, read_settings
from maze_jax.shell.signals import StopSignals
from maze_jax.shell.table import format_table
from maze_jax.shell.table_rows import across_seeds
from maze_jax.shell.trackers import make_writers
from maze_jax.shell.wrappers import normalization_statistics, statistics_to_meta, wrap_env
from maze_jax.xla_flags import run_programs_inline

# Config sections a checkpoint depends on (shapes, normalisation): resuming with different ones is refused.
SHAPE_SECTIONS = ("env", "wrappers", "model")


class RunStopped(Exception):
    """Training ended early (signal or divergence) after saving; `reason` is SIGINT, SIGTERM or non-finite."""

    EXIT_CODES = {"SIGINT": 130, "SIGTERM": 143, "non-finite": 3, "env-failed": 4, "write-failed": 5,
                  "out-of-memory": 6}

    def __init__(self, reason: str, checkpoint_dir: str):
        super().__init__(f"training stopped ({reason}); resume from the run directory of {checkpoint_dir}")
        self.reason = reason
        self.exit_code = self.EXIT_CODES.get(reason, 1)


# Two streams of randomness, each from its own root: the agent's (`seeding.agent_base_seed`: network init, action
# sampling, minibatches) and the envs' (`seeding.env_base_seed`: resets, dynamics, evaluation episodes), so that
# equal seed numbers still give independent randomness.
AGENT_STREAM, ENV_STREAM = 0x61676E74, 0x656E7673  # "agnt", "envs"
PBT_STREAM = 0x70627420  # "pbt ": folded into the agent key


def _env_stream(env_seed: int | None, use: int) -> jax.Array:
    return jax.random.fold_in(jax.random.fold_in(jax.random.key(ENV_STREAM), int(env_seed or 0)), use)


def agent_key(settings: RunSettings) -> jax.Array:
    """The run's root key of the agent (network init, action sampling, minibatches)."""
    return jax.random.fold_in(jax.random.key(AGENT_STREAM), int(settings.agent_seed))


def population_key(settings: RunSettings) -> jax.Array:
    """The key of population-based training's draws (first hyperparameters, exploit and explore)."""
    return jax.random.fold_in(agent_key(settings), PBT_STREAM)


def env_key(settings: RunSettings) -> jax.Array:
    """The run's root key of the training envs (resets and dynamics)."""
    return _env_stream(settings.env_seed, 0)


def eval_key(settings: RunSettings) -> jax.Array:
    """The key of the evaluations after each epoch (`fold_in(eval_key, epoch)`)."""
    return _env_stream(settings.env_seed, 1)


def final_evaluation_key(env_seed: int) -> jax.Array:
    """The key of a run's final evaluation (a rollout of the run with this key reproduces it)."""
    return _env_stream(env_seed, 2)


def normalization_key(env_seed: int | None) -> jax.Array:
    """The key of the random-policy samples that normalisation statistics are estimated from."""
    return _env_stream(env_seed, 3)


def build(settings: RunSettings, env=None, model=None, statistics: dict | None = None,
          echo: Callable = print) -> tuple[EnvSpec, Trainer]:
    """Env (wrapped as the settings say) and trainer (with its networks). `env` (anything `as_env_spec` takes)
    and `model` (a flax module), when given, replace the env and model configs (the Python API's built objects).
    `statistics`: stored observation-normalisation statistics, which take priority."""
    env_spec = build_env(settings.env) if env is None else as_env_spec(env)
    echo(stepped_by(env_spec), flush=True)
    if note := unbounded_action_note(env_spec):
        echo(note, flush=True)
    env_spec = wrap_env(env_spec, settings.wrappers, statistics, settings.normalization_samples,
                        normalization_key(settings.env_seed), echo)
    algorithm = build_algorithm(settings.algorithm, env_spec, settings.model if model is None else model,
                                settings.critic)
    return env_spec, build_trainer(algorithm, env_spec, settings.n_seeds, settings.host, settings.grid)


def check_compatible(input_dir: str, cfg: DictConfig) -> None:
    """Refuses to resume a run whose env, wrappers or model differ from this config's (shapes would not match)."""
    if not os.path.isdir(input_dir):
        raise ConfigError(f"input_dir={input_dir!r} does not exist")
    saved = load_yaml(os.path.join(input_dir, CONFIG_FILE), f"input_dir={input_dir!r}")
    for section in SHAPE_SECTIONS:
        old, new = plain(saved.get(section)) or {}, plain(cfg.get(section)) or {}
        if section == "env":  # only what defines the environment, not e.g. its reward threshold
            old = {k: v for k, v in old.items() if k != "reward_threshold"}
            new = {k: v for k, v in new.items() if k != "reward_threshold"}
        if changes := differences(old, new, section):
            more = f" and {len(changes) - 3} more" if len(changes) > 3 else ""
            raise ConfigError(f"input_dir={input_dir!r} was trained with a {section} incompatible with this run's "
                              f"{section}: {'; '.join(changes[:3])}{more} (a resume keeps the env, wrappers and "
                              "model; a new run can change them)")
    members = lambda c: count_configs(plain(c.get("grid"))) * int((c.get("runner") or {}).get("n_seeds", 1) or 1)
    if members(saved) != members(cfg):
        raise ConfigError(f"input_dir={input_dir!r} trained {members(saved)} members (grid configurations x "
                          f"runner.n_seeds), this config {members(cfg)}: a resume keeps the grid's size and the "
                          "seeds (its values may change)")


def differences(old: Any, new: Any, path: str) -> list[str]:
    """What differs between two configs, one entry a key: `model.hidden_units was [64, 64], is [32]`."""
    if not (isinstance(old, dict) and isinstance(new, dict)):
        return [] if old == new else [f"{path} was {old!r}, is {new!r}"]
    changes = []
    for key in [*old, *(k for k in new if k not in old)]:
        if key not in new or key not in old:
            was, now = (repr(old[key]), "unset") if key not in new else ("unset", repr(new[key]))
            changes.append(f"{path}.{key} was {was}, is {now}")
        else:
            changes.extend(differences(old[key], new[key], f"{path}.{key}"))
    return changes


def carry_model(raw: dict, state: TrainState) -> tuple[TrainState, list]:
    """The networks of a run saved by another algorithm (raw arrays), placed into this fresh `state`."""
    template = state.learner.params
    given = {k: v for k, v in raw["learner"]["params"].items() if k in template}
    fitted = {k: jax.tree.map(jnp.asarray, fit_arrays(template[k], v)) for k, v in given.items()}
    return state.replace(learner=state.learner.replace(params={**template, **fitted})), sorted(fitted)


def restore(input_dir: str, trainer: Trainer, fresh: TrainState, echo: Callable, keep_hparams: bool = False):
    """The newest usable state and progress of a previous run, plus its best state when that is usable too, with this
    config's hyperparameters (`keep_hparams`: the saved ones, as population-based training evolved them). Corrupt
    checkpoints are skipped with a line (see `shell.resume`). A run of another algorithm hands over its networks
    only: optimizer state, counters and best score start afresh."""
    name = trainer.algorithm.name

    def read_state(store: CheckpointDir, step: int):
        saved_algorithm = store.restore_meta(step).get("algorithm", name)
        if saved_algorithm != name:  # another algorithm's state: raw arrays, its networks are carried over
            return saved_algorithm, store.restore_raw(step)
        return name, store.restore(fresh, step)[0]

    (saved_algorithm, state), progress, source = read_first_usable(input_dir, read_state, echo)
    if saved_algorithm != name:
        state, networks = carry_model(state, fresh)
        echo(f"Resumed the {' and '.join(networks)} of a {saved_algorithm} run from {input_dir}; "
             f"optimizer state, counters and best score restart for {name}", flush=True)
        return state, Progress(algorithm=name), None
    if source.startswith(BEST):  # the latest checkpoints were unusable: the best model is where training goes on
        best = state
    else:
        try:
            best = read_first_usable(input_dir, lambda store, step: store.restore(fresh, step)[0], echo, (BEST,))[0]
        except ConfigError as error:  # no usable best model: the next evaluation sets a new one
            if os.path.isdir(os.path.join(input_dir, BEST)):
                echo(f"No usable best model ({error}): the best model restarts", flush=True)
            best, progress.best_score, progress.best_epoch, progress.seed_best_scores = None, -math.inf, -1, None
    progress.algorithm = name
    echo(f"Resumed {input_dir} at epoch {progress.epoch} (best {progress.best_score:.3f} "
         f"at epoch {progress.best_epoch})", flush=True)
    if keep_hparams:
        return state, progress, best
    with_hparams = lambda s: s.replace(learner=s.learner.replace(hparams=fresh.learner.hparams))  # this config's
    return with_hparams(state), progress, None if best is None else with_hparams(best)


LARGE_NETWORKS = 10_000_000  # parameters; RL policies rarely need more (Atari's Nature CNN has 1.7M)


def size_note(shapes) -> str:
    """'' for networks of a usual size; else a line on their size, what it costs and where to look (a CNN with
    stride 1 on 96x96 frames has 75M parameters: 0.5 GB checkpoints that take many seconds to write)."""
    total = sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(shapes))
    if total <= LARGE_NETWORKS:
        return ""
    return (f"Note: the networks have {total:,} parameters, which every checkpoint writes with the optimizer's state; "
            "model_summary.txt lists them by layer (for images, larger model.strides shrink them)")


def channels_first_note(obs, layout: str) -> str:
    """'' unless `model.image_layout` `auto` reads an image of `obs` (one observation) as channels first; else a line
    that says so and how to read it the other way."""
    found = channels_first_images(obs, layout) if layout == "auto" else []
    if not found:
        return ""
    described = ", ".join(f"{f'{key!r} ' if key else 'observations '}{shape} as {shape[0]} channels of "
                          f"{shape[1]}x{shape[2]}" for key, shape in found)
    return f"Note: the pixel model reads {described} (model.image_layout=hwc: height, width, channels)"


def save_model_summary(run_dir: str, networks: dict) -> None:
    """`model_summary.txt`: each network's ({"policy": params, "critic": params}) parameters by path and shape, its
    count, and the total count."""
    lines, total = [], 0
    for name, params in networks.items():
        count = 0
        lines.append(f"{name}:")
        for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
            count += int(np.size(leaf))
            lines.append(f"  {jax.tree_util.keystr(path):<58} {str(tuple(np.shape(leaf))):>16}")
        lines.append(f"  {name} parameters: {count}")
        total += count
    lines.append(f"total parameters: {total}")
    with open_for_writing(os.path.join(run_dir, "model_summary.txt")) as f:
        f.write("\n".join(lines) + "\n")


def parameter_shapes(state, n_seeds: int):
    """One seed's network parameters as shapes (`ShapeDtypeStruct`s): what the summary and the drawing need,
    without device work."""
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(np.shape(x)[n_seeds > 1:], x.dtype), state.learner.params)


def close_writer(writer) -> OSError | None:
    """Closes the run's writers (None: none); the OSError that kept them from writing their last records, if one
    did (a full disk)."""
    try:
        if writer is not None:
            writer.close()
    except OSError as error:
        return error
    return None


def draw_quietly(*args) -> None:
    """`draw_networks` on a thread: a picture that cannot be written (a full disk) is left out without a traceback;
    what the disk does to the run's checkpoints is what the run reports."""
    try:
        draw_networks(*args)
    except OSError:
        pass


def start_drawing_networks(run_dir: str, params, trainer: Trainer, env_spec: EnvSpec,
                           non_lin: str = "") -> threading.Thread:
    """`networks.png` (Maze's "graphical depictions" of policy and critic, `params` as shapes, `non_lin` the
    hidden layers' nonlinearity), drawn on a thread while training starts; the caller joins it."""
    networks = {name: params[name] for name in ("policy", "critic") if name in params}
    leaves = jax.tree_util.tree_flatten_with_path(env_spec.observation_example())[0]
    observation = {jax.tree_util.keystr(path).strip("[]'") or "observation": tuple(np.shape(leaf))
                   for path, leaf in leaves}
    steps = tuple(step.name for step in sub_steps(env_spec.env))
    outputs = f"actions: {describe_actions(trainer.algorithm.policy.dist)}"
    thread = threading.Thread(target=draw_quietly, daemon=True,
                              args=(os.path.join(run_dir, NETWORKS_FILE), networks, observation, steps, outputs,
                                    non_lin))
    thread.start()
    return thread


def final_evaluation(programs: Programs, state, settings: RunSettings, epoch: int, echo: Callable,
                     should_stop: Callable = lambda: False, member_names: list | None = None) -> dict | None:
    """Deterministic evaluation of `state`'s policy: `runner.final_eval_rollouts` episodes, printed; None when
    `should_stop()` turned true first. With several members (seeds, a grid's configurations), each member's mean
    is added as `<member name>/final_BaseEnvEvents/reward/mean`."""
    # said first: with a slow Python env these episodes take a while, and the table comes only at their end
    n_episodes = settings.loop.final_eval_rollouts
    echo(f"Evaluating the best model on {n_episodes} episodes ...", flush=True)
    progress = EpisodeProgress("final evaluation", n_episodes, settings.loop.progress_interval_s, echo, should_stop)
    evaluate = evaluate_polling(programs, progress.poll)  # a slow Python env's episodes stop at a signal too
    played = play_in_batches(evaluate, state, final_evaluation_key(settings.env_seed), n_episodes, progress.poll,
                             progress.on_batch)
    if played is None:
        return None
    returns, lengths = played
    if note := unfinished_note(returns):
        echo(note, flush=True)
    members = member_names is not None and len(member_names) > 1
    table = episode_table(returns, lengths, "final", per_seed=members or settings.n_seeds > 1)
    stats = across_seeds(table)
    # the header counts the epochs trained (iterations 0 to epoch - 1): an iteration `epoch` never ran
    echo(format_table(epoch, epoch, stats).replace(f"Iteration {epoch}",
                                                   f"Final evaluation of the best model, after {epoch} epochs"),
         flush=True)
    mean = f"final_{REWARD}mean"
    return {**stats, **({f"{name}/{mean}": float(v) for name, v in zip(member_names, table[mean])} if members else {})}


def short_of_threshold_note(final: dict, threshold: float | None, best_score: float, eval_episodes: int,
                            algorithm: str) -> str:
    """The line said when the final evaluation's mean falls under the reward threshold that an evaluation during
    training reached ('' otherwise): the mean of a few episodes crosses a threshold by chance more often, and the run
    stops at the first that does."""
    mean = final.get(f"final_{REWARD}mean")
    if threshold is None or mean is None or not best_score >= threshold or mean >= threshold:
        return ""
    key = "runner.n_eval_rollouts" if algorithm == "es" else "algorithm.rollout_evaluator.n_episodes"
    episodes = f"{eval_episodes} episode{'s' if eval_episodes != 1 else ''}"
    return (f"Note: the final evaluation's mean {mean:.3f} is under the reward threshold {threshold:g} that an "
            f"evaluation of {episodes} reached during training; more evaluation episodes per epoch ({key}) make that "
            "stop surer")


def describe_devices(settings: RunSettings) -> str:
    """One line: the devices the batch is split over, and the processes."""
    mesh = getattr(settings.algorithm, "mesh", None)
    n = mesh.size if mesh is not None else 1
    processes = f" in {jax.process_count()} processes" if jax.process_count() > 1 else ""
    split = f", batch split {n} ways" if n > 1 else ""
    return f"Devices: {n} x {jax.devices()[0].platform}{processes}{split}"


class RunResult(NamedTuple):
    """What a training run leaves: final evaluation statistics, the latest and best states, and how to use them."""

    final: dict
    state: Any
    best_state: Any  # the latest state when no evaluation improved
    progress: Progress
    trainer: Trainer
    env_spec: EnvSpec
    programs: Programs


LOCK_FILE = ".lock"
_LOCKS: dict = {}  # run directory -> the open lock file this process holds


def lock_run_dir(run_dir: str) -> None:
    """Holds `run_dir/.lock` for this process (released when it ends), or a ConfigError when another live run holds
    it: two runs never write one run directory."""
    import fcntl

    run_dir = os.path.abspath(run_dir)
    if run_dir in _LOCKS:
        return
    handle = open_for_writing(os.path.join(run_dir, LOCK_FILE), "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise ConfigError(f"run directory {run_dir} is in use by another run: choose another hydra.run.dir") from None
    handle.truncate(0)
    handle.write(str(os.getpid()))
    handle.flush()
    _LOCKS[run_dir] = handle


def held_by_another_run(run_dir: str) -> bool:
    """Whether another live process holds `run_dir`'s lock."""
    import fcntl

    path = os.path.join(run_dir, LOCK_FILE)
    if os.path.abspath(run_dir) in _LOCKS or not os.path.isfile(path):
        return False
    with open(path) as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return True
    return False


def prepare_run_dir(cfg: DictConfig, settings: RunSettings, run_dir: str, primary: bool) -> None:
    """Checks that a run to resume from fits this config, creates the run directory and locks it for this process."""
    if settings.input_dir:
        check_compatible(settings.input_dir, cfg)
    if primary:
        os.makedirs(run_dir, exist_ok=True)
        refuse_links(run_dir)
        lock_run_dir(run_dir)


def restore_or_init(init: Callable, trainer: Trainer, settings: RunSettings, echo: Callable):
    """A fresh state from the compiled `init`, or the state of the run in `input_dir` (placed as a fresh one is):
    (state, progress, best)."""
    fresh = init(agent_key(settings), env_key(settings))
    if not settings.input_dir:
        if settings.pbt is not None:  # a fresh population starts spread around the config's hyperparameters
            fresh = place_like(fresh.replace(learner=initial_population(fresh.learner, settings.pbt,
                                                                        population_key(settings))), fresh)
        return fresh, Progress(algorithm=trainer.algorithm.name), None
    state, progress, best = restore(settings.input_dir, trainer, fresh, echo, keep_hparams=settings.pbt is not None)
    # on the devices (and with the sharding) the programs expect
    return place_like(state, fresh), progress, None if best is None else place_like(best, fresh)


def import_writers() -> None:
    """Imports Orbax and TensorBoard's writer (0.7 to 1 s on a 2-core CPU) while XLA compiles the epoch and the
    evaluation on its own thread, which leaves Python's lock free."""
    import orbax.checkpoint  # noqa: F401
    import tensorboardX  # noqa: F401


def open_checkpoints(run_dir: str, settings: RunSettings, primary: bool):
    """The run's `checkpoints/` (latest, plus every dump_interval) and `best/` stores; stand-ins off process 0."""
    if not primary:
        return NoCheckpoints(os.path.join(run_dir, LATEST)), NoCheckpoints(os.path.join(run_dir, BEST))
    dump = settings.loop.dump_interval
    return (CheckpointDir(os.path.join(run_dir, LATEST), max_to_keep=1, keep_period=dump or None),
            CheckpointDir(os.path.join(run_dir, BEST), max_to_keep=1))


def run_training(cfg: DictConfig, run_dir: str, echo: Callable = print, env_spec: EnvSpec | None = None,
                 model=None) -> RunResult:
    """Trains as configured, writing table, TensorBoard, config and checkpoints to `run_dir`.

    `env_spec` and `model` (a flax module) replace the env and model configs when given. With several
    processes (jax.distributed) every process trains its share; only process 0 prints and writes files."""
    run_programs_inline()  # a no-op once JAX's backend runs (the command's starts it before this)
    settings = read_settings(cfg)
    with StopSignals(echo) as signals:  # Ctrl-C and SIGTERM from here on: stop at the next safe point
        return run_named_steps(cfg, settings, run_dir, echo, env_spec, model, signals)


def stopping_threshold(threshold: float | None, stop_when_solved: bool, progress: Progress, echo: Callable):
    """The evaluation mean that stops the run (None: none does). A resumed run that was solved already trains on
    to its `algorithm.n_epochs`: more epochs are what its command asked for."""
    if not stop_when_solved or threshold is None:
        return None
    if progress.best_score >= threshold:
        echo(f"The run was solved already (best evaluation mean {progress.best_score:g} >= {threshold:g}): "
             f"training on to algorithm.n_epochs", flush=True)
        return None
    return threshold


def trained_out_note(n_epochs: int, progress: Progress) -> str:
    """What a resume says when its run has trained `algorithm.n_epochs` already ("" otherwise: 0 is unlimited)."""
    if not 0 < n_epochs <= progress.epoch:
        return ""
    return (f"The run has trained {progress.epoch} epochs already, algorithm.n_epochs={n_epochs}: no epoch to train, "
            "only the final evaluation (a larger algorithm.n_epochs trains on)")


def run_named_steps(cfg: DictConfig, settings: RunSettings, run_dir: str, echo: Callable, env_spec, model,
                    signals: StopSignals) -> RunResult:
    """`run_training`'s named steps, with signals handled."""
    enable_compilation_cache(settings.compilation_cache_dir)
    primary = jax.process_index() == 0
    if not primary:
        echo = lambda *args, **kwargs: None  # noqa: E731
    prepare_run_dir(cfg, settings, run_dir, primary)
    stored = stored_statistics(settings.input_dir) if settings.input_dir else None
    env_spec, trainer = build(settings, env_spec, model, stored, echo)  # config mistakes end here, in one line
    echo(OmegaConf.to_yaml(cfg), flush=True)
    echo(describe_devices(settings), flush=True)
    # the epoch and evaluation compile on a background thread while the first state is made and imports load
    compilation = Compilation(trainer, agent_key(settings), echo)
    # a corrupt input ends here
    state, progress, best_state = restore_or_init(compilation.init, trainer, settings, echo)
    import_writers()
    # while the epoch compiles; a tracking store that cannot be used ends the run here, in one line
    writer = make_writers(run_dir, settings.logger, plain(cfg), echo) if primary else None
    programs = compilation.programs(lambda: bool(signals.received))
    if programs is None:  # before training started: nothing to save, and an input run is left as it was
        close_writer(writer)
        trainer.close()
        echo(f"{signals.received} before training started: nothing saved", file=sys.stderr, flush=True)
        raise RunStopped(signals.received, run_dir)
    if primary:  # the run directory holds a run from here on
        path = os.path.join(run_dir, CONFIG_FILE)
        try:
            with open_for_writing(path) as f:
                OmegaConf.save(cfg, f)
        except OSError as error:  # a full disk: the error of a write names no file
            raise OSError(error.errno, error.strerror, error.filename or path) from None
    statistics = normalization_statistics(env_spec)
    progress.eval_episodes = trainer.eval_episodes
    progress.normalization = statistics_to_meta(statistics) if statistics is not None else None
    drawing = None
    if primary:
        shapes = parameter_shapes(state, trainer.n_seeds)
        save_model_summary(run_dir, {name: shapes[name] for name in ("policy", "critic") if name in shapes})
        if note := size_note(shapes):
            echo(note, flush=True)
        model = settings.model if isinstance(settings.model, dict) else {}  # a config (not a flax module)
        if "image_layout" in model and (note := channels_first_note(env_spec.observation_example(),
                                                                     str(model["image_layout"]))):
            echo(note, flush=True)
        drawing = start_drawing_networks(run_dir, shapes, trainer, env_spec, str(model.get("non_lin") or ""))

    if note := trained_out_note(settings.algorithm.n_epochs, progress):
        echo(note, flush=True)
    loop_settings, grid = settings.loop, settings.grid
    options = LoopOptions(n_epochs=settings.algorithm.n_epochs, patience=settings.algorithm.patience,
                          reward_threshold=stopping_threshold(env_spec.reward_threshold,
                                                              loop_settings.stop_when_solved, progress, echo),
                          n_seeds=trainer.n_seeds, progress_interval_s=loop_settings.progress_interval_s,
                          evaluate=loop_settings.evaluate_each_epoch,
                          member_names=tuple(grid.member_names(settings.n_seeds) if grid else
                                             member_names(settings.n_seeds) if settings.pbt else ()),
                          n_configs=grid.size if grid else 1)
    progress_line = ProgressLine(options.n_epochs, progress.epoch, may_stop_early=options.reward_threshold is not None
                                 or bool(options.patience)) if primary else None
    if progress_line is not None:  # printed lines lift the live line out of their way
        echo = progress_line.wrap(echo)
    latest, best = open_checkpoints(run_dir, settings, primary)
    checkpoints = Checkpoints(latest, best, loop_settings.checkpoint_every_s, loop_settings.dump_interval, echo)
    # a resumed run's best is saved into this run directory too (stays the best until beaten)
    loop = LoopState(state, progress, best_state,
                     best_version=int(best_state is not None and best.latest_step() != progress.best_epoch))
    history = scalar_history(settings.input_dir, progress.epoch) if settings.input_dir else []
    grid_table = GridTable(grid, settings.n_seeds, echo, history) if grid and primary else None
    population = Population(settings.pbt, trainer.n_seeds, population_key(settings), run_dir if primary else None,
                            options.score_row, history, echo) if settings.pbt else None
    listeners = [population] if population is not None else []
    listeners += [ConsoleTable(echo, compact=loop_settings.table == "compact"), checkpoints] + (
        [grid_table] if grid_table else []) + (
        [TensorBoard(writer, history),
         LearningCurve(run_dir, title=f"{env_spec.name} | {trainer.algorithm.name} | "
                                      f"{os.path.basename(os.path.abspath(run_dir))}",
                       threshold=env_spec.reward_threshold,
                       history=curve_history(settings.input_dir, progress.epoch) if settings.input_dir else None),
         progress_line]
        if writer is not None else [])
    if writer is not None:
        writer.add_text("hydra_config", "<pre>" + OmegaConf.to_yaml(cfg) + "</pre>")
    try:
        loop = TrainingLoop(programs, options, eval_key(settings), listeners, echo, signals, progress_line,
                            trainer.algorithm.name, adapt=population).run(loop)
        if loop.stop_reason:
            raise RunStopped(loop.stop_reason, latest.path)
        # no evaluation improved: the latest; per-seed selection leaves host arrays, placed as the state is
        best_state = loop.state if loop.best_state is None else place_like(loop.best_state, loop.state)
        final = final_evaluation(programs, best_state, settings, loop.progress.epoch, echo,
                                 lambda: bool(signals.received), options.names())
        if final is None:  # the checkpoints are complete: only the final evaluation is cut short
            echo(f"{signals.received} during the final evaluation: the checkpoints are complete", file=sys.stderr,
                 flush=True)
            raise RunStopped(signals.received, latest.path)
        if note := short_of_threshold_note(final, options.reward_threshold, loop.progress.best_score,
                                           trainer.eval_episodes, trainer.algorithm.name):
            echo(note, flush=True)
        for tag, value in final.items():
            if writer is not None and not math.isnan(value):
                writer.add_scalar(tag, value, loop.progress.epoch)
        if grid_table is not None:
            report(grid_table, final, run_dir, echo)
    finally:
        if drawing is not None:
            drawing.join()
        unwritten = close_writer(writer)
        latest.close()
        best.close()
        trainer.close()
    if unwritten is not None:  # the run went well up to its last TensorBoard records (a disk just full)
        echo(f"Error: {write_error(unwritten)}. The checkpoints are complete", file=sys.stderr, flush=True)
        raise RunStopped("write-failed", latest.path)
    echo(f"Run directory: {os.path.abspath(run_dir)}", flush=True)
    return RunResult(final, loop.state, best_state, loop.progress, trainer, env_spec, programs)
