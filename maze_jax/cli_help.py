"""`--help` of the command lines (`maze-run`, `python -m maze_jax.train`, `python -m maze_jax.rollout`): the config
groups and their options with what each is for (read from the config files' own first comments), the main keys,
resuming, and the exit statuses."""

from __future__ import annotations

import os
import textwrap

from maze_jax.config import CONFIG_DIR as CONF

TRAINING_ONLY = ("algorithm", "model", "critic", "experiment", "logger")
ROLLOUT_ONLY = ("policy",)
GROUP_ORDER = ("env", "wrappers", "model", "critic", "algorithm", "runner", "policy", "experiment", "logger")
ADDED = ("experiment", "logger")  # groups without a default: added with +group=option
WIDTH = 118  # help lines fit a 120-column terminal


def describe(path: str) -> str:
    """A config file's opening comment (its summary), whole: every comment line up to the first key."""
    parts = []
    with open(path) as f:
        for line in f:
            if not line.startswith("#"):
                break
            text = line.lstrip("#").strip()
            if text and not text.startswith("@package"):
                parts.append(text)
    text = " ".join(parts)
    return text[:-1] if text.endswith(".") and not text.endswith("...") else text


def group_options(group: str, training: bool) -> list[tuple[str, str]]:
    """(option, description) of a config group, those that fit the command (rollout runners only for rollouts)."""
    folder = os.path.join(CONF, group)
    options = []
    for name in sorted(os.listdir(folder)):
        if name.endswith(".yaml"):
            text = describe(os.path.join(folder, name))
            if group == "runner" and text.startswith("Rollouts") == training:
                continue
            options.append((name[: -len(".yaml")], text))
    return options


def usage(config_name: str, command: str) -> str:
    """The help text of `command` running `config_name` (conf_train: training; conf_rollout: rollouts)."""
    training = config_name == "conf_train"
    skip = ROLLOUT_ONLY if training else TRAINING_ONLY
    lines = [f"usage: {command} [group=option ...] [key=value ...]", ""]
    if training:
        lines += ["Trains a policy as Maze does: the config groups below choose env, wrappers, model, algorithm and",
                  "runner; keys override single values. Every run writes outputs/<env>-<model>-<algorithm>-<runner>/",
                  "<time>/ (the resolved config, checkpoints, the best model, TensorBoard, train.log).", ""]
    else:
        lines += ["Rolls out a policy: the policy of the training run in input_dir (trained_policy), or without",
                  "input_dir a random policy (random_policy, Maze's default), on that run's env unless env is given;",
                  "prints Maze's table and writes episodes.csv.",
                  "To train, as in Maze: maze-run -cn conf_train [group=option ...] (or python -m maze_jax.train).", ""]
    for group in GROUP_ORDER:
        if group in skip or not os.path.isdir(os.path.join(CONF, group)):
            continue
        prefix = "+" if group in ADDED else ""
        lines.append(f"{prefix}{group}=")
        for option, text in group_options(group, training):  # long summaries wrap under their column
            lines += textwrap.wrap(text, WIDTH, initial_indent=f"  {option:<36} ", subsequent_indent=" " * 39,
                                   break_on_hyphens=False) or \
                [f"  {option}"]
        lines.append("")
    if training:
        lines += ["Main keys:",
                  "  algorithm.n_epochs=N           epochs to train (0: until stopped); algorithm.lr, algorithm.gamma, ...",
                  "  runner.concurrency=N           parallel envs; runner.n_seeds=N trains N seeds in one program",
                  "  env.name=ID                    with env=gym_env: a gymnax, envpool or gymnasium id",
                  "  seeding.env_base_seed=N        and seeding.agent_base_seed=N (drawn and saved when not given)",
                  "  input_dir=RUN_DIR              resume RUN_DIR: its whole state and settings, with this command's",
                  "                                 overrides on top; algorithm=... switches algorithm and keeps the networks",
                  "  log_base_dir=DIR               where run directories go (default outputs)",
                  "  --multirun k=a,b               a sweep, one run per combination",
                  "  +grid.KEY=[a,b]                a grid of traced algorithm hyperparameters in one program;",
                  "                                 +experiment=pbt: population-based training (runner.n_seeds)",
                  "",
                  "Exit statuses: 0 done, 2 bad input (one line on stderr), 3 diverged or non-finite env data,",
                  "4 a Python env failed, 5 a checkpoint could not be written, 6 out of memory,",
                  "130/143 interrupted (saved)."]
    else:
        lines += ["Main keys:",
                  "  input_dir=RUN_DIR              the training run whose policy is rolled out",
                  "  runner.n_episodes=N            episodes to play; runner.record_trajectory=true writes them",
                  "  seeding.env_base_seed=N        default: the run's own (then the final evaluation is reproduced)",
                  "  model=... critic=...           as Maze's rollouts name them: must be the run's own (its networks)",
                  "",
                  "Exit statuses: 0 done, 2 bad input (one line on stderr), 4 a Python env failed, 6 out of memory."]
    return "\n".join(lines)
