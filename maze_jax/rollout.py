"""`python -m maze_jax.rollout input_dir=<run> [runner.n_episodes=100] [policy=random_policy] ...`.

Plays episodes of a trained policy (or a random baseline) in vmapped batches and prints Maze's statistics
table; writes `episodes.csv` (return and length of every episode) and, with `runner.record_trajectory=true`,
`trajectories.npz`. With the run's own seed and batch (the defaults) it reproduces the run's final evaluation.
"""

from __future__ import annotations

import csv
import inspect
import os
import secrets
import sys

from maze_jax.xla_flags import apply_defaults

apply_defaults()  # before anything imports jax

import hydra  # noqa: E402
from hydra.core.hydra_config import HydraConfig  # noqa: E402
from omegaconf import DictConfig, OmegaConf, open_dict  # noqa: E402

from maze_jax.cli import (answer_help_or_version, check_output_dir, command_line_config_dirs, exit_now,  # noqa: E402
                          merge_on_resume, note_folders, override_key, override_value, remove_created, run_hydra,
                          run_reporting_errors)
from maze_jax.config import CONFIG_DIR, MAX_SEED, ConfigError, read  # noqa: E402

TRAJECTORY_FILE, EPISODES_FILE = "trajectories.npz", "episodes.csv"
CONFIG_NAME = "conf_rollout"
RANDOM_POLICY = "maze_jax.trained_policy.random_policy"  # policy=random_policy's and masked_random_policy's factory


def sets_group(overrides: list[str], group: str) -> bool:
    """Whether command-line `overrides` choose or change config group `group` (`env=...`, `env.name=...`)."""
    return any(k == group or k.startswith(group + ".") for k in map(override_key, overrides))


def chooses_group(overrides: list[str], group: str) -> bool:
    """Whether command-line `overrides` choose an option of config group `group` (`env=gym_env`), not just change
    some of its settings (`env.max_episode_steps=1000`)."""
    return any(override_key(o) == group for o in overrides)


def rollout_config(cfg: DictConfig, given: list[str], config_dirs: list[str] = ()) -> DictConfig:
    """The rollout config with env and wrappers taken from the trained run and the seed filled: the run's own,
    with the settings this command changes (`env.max_episode_steps=1000`), unless it chooses another (`env=...`).
    What the run's saved config names of code (its env, wrappers and networks) must be maze_jax's or named by
    this command (`given`, the configs of `config_dirs`), unless `trust_input_dir=true`."""
    from maze_jax.shell.settings import plain
    from maze_jax.shell.trust import TRUST_SWITCH, check_trusted, named_references
    from maze_jax.trained_policy import load_config

    saved = load_config(str(cfg.input_dir)) if cfg.input_dir else None
    if saved is not None and not cfg.get(TRUST_SWITCH, False):
        used = {k: v for k, v in (plain(saved) or {}).items()
                if not (k in ("env", "wrappers") and chooses_group(given, k))}
        check_trusted(used, named_references(given, config_dirs), f"input_dir={str(cfg.input_dir)!r}")
    if saved is not None and cfg.policy.get("_target_") != RANDOM_POLICY:  # a random policy has no network
        check_networks(saved, cfg, given, str(cfg.input_dir))
    with open_dict(cfg):
        for group in ("env", "wrappers"):
            if saved is not None and group in saved and not chooses_group(given, group):
                settings = [o for o in given if sets_group([o], group)]  # `env.x=...`: the run's env changed
                cfg[group] = merge_on_resume(OmegaConf.create({group: saved[group]}), {}, cfg, settings)[group]
        if cfg.seeding.get("env_base_seed") is None:
            cfg.seeding.env_base_seed = int(saved.seeding.env_base_seed) if saved else secrets.randbelow(2**31)
        read(cfg.seeding, "env_base_seed", int, "seeding", low=0, high=MAX_SEED)
    return cfg


def check_networks(saved: DictConfig, cfg: DictConfig, given: list[str], input_dir: str) -> None:
    """A rollout plays the trained run's networks, built from its saved model and critic configs. Maze's rollout
    commands name them too (`model=vector_obs critic=template_state`): refused in one line where the model, or
    whether the critic shares the policy's torso, differs from the run's (its parameters would not fit)."""
    from maze_jax.shell.session import differences
    from maze_jax.shell.settings import plain

    shared = lambda c: bool((plain(c.get("critic")) or {}).get("shared"))  # noqa: E731
    changes = differences(plain(saved.get("model")) or {}, plain(cfg.get("model")) or {}, "model") \
        if sets_group(given, "model") else []
    if sets_group(given, "critic") or chooses_group(given, "model"):
        changes += differences(shared(saved), shared(cfg), "critic.shared")
    if changes:
        more = f" and {len(changes) - 3} more" if len(changes) > 3 else ""
        raise ConfigError(f"input_dir={input_dir!r} was trained with other networks than this command names: "
                          f"{'; '.join(changes[:3])}{more} (leave model and critic out: the rollout builds the "
                          "run's own)")


def write_episodes(path: str, returns, lengths) -> None:
    from maze_jax.shell.files import open_for_writing

    with open_for_writing(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["episode", "return", "length"])
        # an episode that did not end has NaN for both (pandas and numpy read "nan" as NaN)
        writer.writerows((i, float(r), int(n) if n == n else "nan") for i, (r, n) in enumerate(zip(returns, lengths)))


def write_trajectories(path: str, parts: list, returns, lengths) -> None:
    """The recorded batches as one npz, episode-major: arrays (episodes, steps, ...) cut to the episode count.
    `episode_length` is an integer; for an episode that did not end (`episode_ended` false, return NaN) it is
    the number of steps recorded."""
    import jax
    import numpy as np

    n = len(returns)
    joined = jax.tree.map(lambda *xs: np.swapaxes(np.concatenate(xs, axis=1), 0, 1)[:n], *parts)
    arrays = {f"{name}_{k}" if k else name: v for name in ("observation", "action")
              for k, v in _flat(getattr(joined, name)).items()}
    ended = ~np.isnan(np.asarray(lengths, np.float64))  # an episode that did not end runs to the last recorded step
    arrays.update(reward=joined.reward, terminated=joined.terminated, truncated=joined.truncated,
                  episode_return=np.asarray(returns), episode_ended=ended,
                  episode_length=np.where(ended, np.nan_to_num(lengths), joined.reward.shape[1]).astype(np.int32))
    from maze_jax.shell.files import open_for_writing

    with open_for_writing(path, "wb") as f:
        np.savez(f, **arrays)


def _flat(tree) -> dict:
    """Dict observations or actions as `key` -> array ("" for a plain array)."""
    import jax

    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {"_".join(str(getattr(p, "key", p)) for p in path): leaf for path, leaf in leaves}


def run_rollout(cfg: DictConfig, out_dir: str, echo=print) -> dict:
    """Rolls out `cfg.policy` on `cfg.env` as configured; writes the files to `out_dir`; returns the statistics."""
    from maze_jax.algorithms.metrics import episode_table
    from maze_jax.config import import_object
    from maze_jax.envs import build_env
    from maze_jax.shell.loop import EpisodeProgress, unfinished_note
    from maze_jax.shell.programs import enable_compilation_cache
    from maze_jax.shell.resume import stored_statistics
    from maze_jax.shell.session import final_evaluation_key, normalization_key
    from maze_jax.shell.settings import ROLLOUT_RUNNERS, LoopSettings, check_known_keys, plain, runner_keys
    from maze_jax.shell.table import format_table
    from maze_jax.shell.video import frame_source, record_episodes
    from maze_jax.shell.wrappers import wrap_env

    enable_compilation_cache(cfg.get("compilation_cache_dir"))
    runner = plain(cfg.runner)
    if "n_eval_rollouts" in runner and "n_episodes" not in runner:
        raise ConfigError("runner: a training runner (runner=local, dev, distributed or ray) cannot roll out; "
                          "rollouts take runner=parallel (the default) or sequential")
    check_known_keys(runner, "runner", runner_keys(ROLLOUT_RUNNERS))
    n_episodes = read(runner, "n_episodes", int, "runner", low=1)
    record = read(runner, "record_trajectory", bool, "runner")
    render = read(runner, "render", bool, "runner") if "render" in runner else False
    n_videos = read(runner, "render_episodes", int, "runner", low=1) if "render_episodes" in runner else 1
    interval_s = read(runner, "progress_interval_s", float, "runner", low=0.0) if "progress_interval_s" in runner \
        else LoopSettings.progress_interval_s
    stored = stored_statistics(str(cfg.input_dir)) if cfg.input_dir else None
    samples = read(runner, "normalization_samples", int, "runner", low=1)
    env_spec = build_env(plain(cfg.env))
    env_spec = wrap_env(env_spec, plain(cfg.wrappers), stored, samples, normalization_key(cfg.seeding.env_base_seed),
                        echo)
    policy_cfg = {k: v for k, v in plain(cfg.policy).items() if k != "_target_"}
    deterministic = policy_cfg.pop("deterministic", True)
    factory = import_object(cfg.policy._target_, "policy._target_")
    try:  # the settings the policy's factory takes, checked before it runs
        inspect.signature(factory).bind(str(cfg.input_dir), env_spec, **policy_cfg)
    except TypeError as error:
        raise ConfigError(f"policy config does not fit {cfg.policy._target_}: {error}") from None
    loaded = factory(str(cfg.input_dir), env_spec, **policy_cfg)
    if render:
        frame_source(env_spec)  # an env that cannot draw is refused before anything is played
    if runner.get("batch_size") is not None:  # given: it must be usable (0 is not "the default")
        batch = read(runner, "batch_size", int, "runner", low=1)
    else:
        batch = loaded.eval_episodes or n_episodes
    echo(f"Rolling out {n_episodes} episodes of {env_spec.name} in batches of {batch} "
         f"(policy {cfg.policy._target_.rsplit('.', 1)[-1]}, seed {cfg.seeding.env_base_seed})", flush=True)

    os.makedirs(out_dir, exist_ok=True)
    progress = EpisodeProgress("rollout", n_episodes, interval_s, echo)
    played = loaded.play(n_episodes, final_evaluation_key(cfg.seeding.env_base_seed), batch, deterministic, record,
                         progress)
    returns, lengths = played[:2]
    if note := unfinished_note(returns):
        echo(note, flush=True)
    stats = {k: float(v) for k, v in episode_table(returns, lengths, "rollout").items()}
    echo(format_table(0, 0, stats).replace("Iteration 0", "Rollout"), flush=True)
    write_episodes(os.path.join(out_dir, EPISODES_FILE), returns, lengths)
    echo(f"Per-episode returns and lengths: {os.path.abspath(os.path.join(out_dir, EPISODES_FILE))}", flush=True)
    if record:
        write_trajectories(os.path.join(out_dir, TRAJECTORY_FILE), played[2], returns, lengths)
        echo(f"Trajectories: {os.path.abspath(os.path.join(out_dir, TRAJECTORY_FILE))}", flush=True)
    if render:
        record_episodes(loaded, n_videos, final_evaluation_key(cfg.seeding.env_base_seed), deterministic, out_dir,
                        echo)
    return stats


@hydra.main(version_base=None, config_path=CONFIG_DIR, config_name=CONFIG_NAME)
def main(cfg: DictConfig) -> None:
    hydra_cfg = HydraConfig.get()
    out_dir = hydra_cfg.runtime.output_dir
    run_reporting_errors(lambda: run_rollout(rollout_config(cfg, list(hydra_cfg.overrides.task),
                                                            command_line_config_dirs(hydra_cfg)), out_dir),
                         on_config_error=lambda: remove_created(out_dir, ("rollout.log",)))


def with_default_policy(argv: list[str]) -> list[str]:
    """Maze's default: without `input_dir` (and without a `policy` choice or setting) the rollout plays a random
    policy, as `maze-run env=gym_env env.name=CartPole-v0` does in Maze; with `input_dir`, the run's policy."""
    if override_value(argv, "input_dir") or sets_group([a for a in argv if not a.startswith("-")], "policy"):
        return argv
    return [*argv, "policy=random_policy"]


def cli(argv: list[str], command: str = "python -m maze_jax.rollout") -> None:
    """The rollout command line: `argv` are its arguments (Hydra flags and overrides). Never returns."""
    answer_help_or_version(argv, CONFIG_NAME, command)
    check_output_dir(argv)
    note_folders(argv)
    argv = with_default_policy(argv)
    sys.argv[1:] = argv  # Hydra reads its command line from sys.argv
    try:
        run_hydra(main, CONFIG_NAME, argv)
    except SystemExit as stop:
        exit_now(stop.code if isinstance(stop.code, int) else 1)
    exit_now(0)


if __name__ == "__main__":
    cli(sys.argv[1:])
