"""`python -m maze_jax.train [group=option ...] [key=value ...]`: Maze's training command line.

Composes the Hydra config, builds env, policy and trainer, then runs the host loop of jitted epochs.
User mistakes end with one line on stderr and exit status 2; `HYDRA_FULL_ERROR=1` shows the traceback.
"""

from __future__ import annotations

import os
import shutil
import sys

from maze_jax.xla_flags import apply_defaults

apply_defaults()  # before anything imports jax

import hydra  # noqa: E402
from hydra.core.hydra_config import HydraConfig  # noqa: E402
from hydra.types import RunMode  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402

from maze_jax.cli import (GROUPS, answer_help_or_version, check_output_dir, command_line_config_dirs,  # noqa: E402
                          exit_now, merge_on_resume, note_folders, override_key, override_value, remove_created,
                          run_hydra, run_reporting_errors)
from maze_jax.config import CONFIG_DIR, ConfigError, first_line  # noqa: E402


def _run_label(name, group: str, backend: str = "auto", target: str = "") -> str:
    """The env part of run directories' names (`hydra.run.dir` in conf_train.yaml): after the env that trains."""
    from maze_jax.envs.make import run_label  # imported when a run starts: `--help` stays quick

    return run_label(name, group, backend, target)


OmegaConf.register_new_resolver("maze_jax.env_label", _run_label, replace=True)
CONFIG_NAME = "conf_train"


def resume_config(input_dir: str, composed: DictConfig, given: list[str]) -> DictConfig:
    """The config of the run in `input_dir` with this command's overrides on top (see `merge_on_resume`)."""
    from maze_jax.shell.settings import CONFIG_FILE, load_yaml

    if not os.path.isdir(input_dir):
        raise ConfigError(f"input_dir={input_dir!r} does not exist")
    saved = load_yaml(os.path.join(input_dir, CONFIG_FILE), f"input_dir={input_dir!r}")
    hydra_file = os.path.join(input_dir, ".hydra", "hydra.yaml")
    choices = {}
    if os.path.isfile(hydra_file):
        try:
            choices = OmegaConf.select(load_yaml(hydra_file, f"input_dir={input_dir!r}"), "hydra.runtime.choices",
                                       default=None) or {}
            choices = dict(choices)
        except (ConfigError, ValueError, TypeError) as error:  # Hydra's record of the choices: not essential
            print(f"Skipped {hydra_file} ({error}): the saved config holds the run's settings", flush=True)
            choices = {}
    return merge_on_resume(saved, choices, composed, given)


def main_body(cfg: DictConfig, run_dir: str, given_overrides: list[str], config_dirs: list[str] = ()) -> float:
    """The whole training run in `run_dir` (the CLI's work, reusable from Python); returns its best evaluation mean
    (-inf when nothing was evaluated). A resumed run's saved config may name only code that is maze_jax's or
    that this command names (`given_overrides`, the configs in `config_dirs`), unless `trust_input_dir=true`."""
    import jax

    from maze_jax.shell.console_log import console_to
    from maze_jax.shell.session import run_training
    from maze_jax.shell.settings import draw_seeds
    from maze_jax.shell.trust import TRUST_SWITCH, check_trusted, named_references
    from maze_jax.xla_flags import run_programs_inline

    if cfg.input_dir:
        trust = bool(cfg.get(TRUST_SWITCH, False))  # this command's word, never the saved run's
        cfg = resume_config(str(cfg.input_dir), cfg, given_overrides)
        cfg[TRUST_SWITCH] = trust
        if not trust:
            check_trusted(OmegaConf.to_container(cfg), named_references(given_overrides, config_dirs),
                          f"input_dir={str(cfg.input_dir)!r}")
    draw_seeds(cfg)
    run_programs_inline()  # before jax.process_index() starts JAX's backend
    if jax.process_index() != 0:  # only process 0 writes the run directory
        return float(run_training(cfg, run_dir).progress.best_score)
    with console_to(os.path.join(run_dir, "train.log")):
        return float(run_training(cfg, run_dir).progress.best_score)


def check_run_dir(argv: list[str]) -> None:
    """Before Hydra writes anything: a `hydra.run.dir` that holds a run is refused in one line (a fresh run would
    replace it, and Hydra would rewrite its records); what the output folders hold is noted (`note_folders`), so
    that a failed command removes only what it created."""
    from maze_jax.shell.settings import CONFIG_FILE

    given = override_value(argv, "hydra.run.dir")
    if given and "${" not in given:
        path = os.path.abspath(os.path.expanduser(given))
        if any(os.path.lexists(os.path.join(path, f)) for f in (CONFIG_FILE, "checkpoints")):
            from maze_jax.shell.session import held_by_another_run

            if held_by_another_run(path):
                print(f"Error: run directory {path} is in use by another run: choose another hydra.run.dir",
                      file=sys.stderr, flush=True)
            else:
                print(f"Error: hydra.run.dir={given!r} already holds a run: resume it into a new run directory "
                      f"with input_dir={given} (and no hydra.run.dir), or choose another hydra.run.dir",
                      file=sys.stderr, flush=True)
            sys.exit(2)
    note_folders(argv)


def remove_unused_run_dir(run_dir: str) -> None:
    """After a mistake found before training started: what this command created goes (see `remove_created`). A
    folder that holds a run (its config, checkpoints) or that another live run holds is left as it is."""
    from maze_jax.shell.session import held_by_another_run
    from maze_jax.shell.settings import CONFIG_FILE

    if not os.path.isdir(run_dir) or held_by_another_run(run_dir) or \
            any(os.path.lexists(os.path.join(run_dir, f)) for f in (CONFIG_FILE, "checkpoints")):
        return
    remove_created(run_dir, ("train.log", ".lock"))


@hydra.main(version_base=None, config_path=CONFIG_DIR, config_name=CONFIG_NAME)
def main(cfg: DictConfig) -> float:
    """One run; returns its best evaluation mean, the score a sweeper (`+experiment=optuna`) maximises."""
    hydra_cfg = HydraConfig.get()
    run_dir = hydra_cfg.runtime.output_dir
    return run_reporting_errors(lambda: main_body(cfg, run_dir, list(hydra_cfg.overrides.task),
                                                  command_line_config_dirs(hydra_cfg)),
                                on_config_error=lambda: remove_unused_run_dir(run_dir),
                                in_sweep=hydra_cfg.mode == RunMode.MULTIRUN)


def with_saved_choices(argv: list[str]) -> list[str]:
    """On resume, the saved run's config-group choices the command does not repeat, put before its overrides.

    Hydra composes before our code runs: without this, `input_dir=<a PPO run> algorithm.lr=1e-4` would be
    composed against the default algorithm and refused, and the run directory would be misnamed. A run composed
    with its own config folder (`--config-dir`, a custom project's groups) is resumed only with a folder this
    command names: Hydra would run what the folder's configs say (its callbacks, say) before any check, so a
    folder recorded in the run directory is used only with `trust_input_dir=true`."""
    input_dir = override_value(argv, "input_dir")
    hydra_file = os.path.join(input_dir, ".hydra", "hydra.yaml")
    if not input_dir or not os.path.isfile(hydra_file):
        return argv
    flags, overrides = split_flags(argv)
    given = {override_key(a) for a in overrides}
    try:
        runtime = OmegaConf.load(hydra_file).hydra.runtime
        missing = [f"{g}={runtime.choices[g]}" for g in GROUPS
                   if g not in given and runtime.choices.get(g) not in (None, "null")]
        own_dirs = [str(s.path) for s in runtime.get("config_sources", [])
                    if s.provider == "command-line" and s.schema == "file"]
    except Exception:  # Hydra's record unreadable or mangled: the resume says so, and the saved config still holds
        return argv
    if own_dirs and not any(f.split("=")[0] in ("--config-dir", "-cd") for f in flags):
        if override_value(overrides, "trust_input_dir").lower() != "true":
            print(f"Error: input_dir={input_dir!r} was composed with its own config folder {own_dirs[0]}: a run "
                  f"directory is data, so name the folder yourself (--config-dir {own_dirs[0]}), or pass "
                  "trust_input_dir=true if you trust the run directory", file=sys.stderr, flush=True)
            sys.exit(2)
        if os.path.isdir(own_dirs[0]):
            flags = ["--config-dir", own_dirs[0], *flags]
    if not given & {"env", "env.name"}:  # the new run directory is named after the run's env id
        missing += saved_env_name(input_dir)
    return flags + missing + overrides


def saved_env_name(input_dir: str) -> list[str]:
    """`["env.name='<id>'"]` from the run's saved config, or [] when it has none (or is unreadable: the resume
    reports that)."""
    try:
        name = OmegaConf.load(os.path.join(input_dir, "hydra_config.yaml")).env.get("name")
    except Exception:
        return []
    if not isinstance(name, str) or not name or "'" in name or ":" in name:  # `module:Id` would count as named code
        return []
    return [f"env.name='{name}'"]


# Hydra's command-line flags that take a value as the next argument (`--config-dir conf`).
VALUE_FLAGS = ("--config-dir", "-cd", "--config-path", "-cp", "--config-name", "-cn", "--experimental-rerun")


def split_flags(argv: list[str]) -> tuple[list[str], list[str]]:
    """Hydra's flags (with the values that follow them) apart from the overrides, order kept within each."""
    flags, overrides, i = [], [], 0
    while i < len(argv):
        arg = argv[i]
        if arg.startswith("-"):
            takes_value = arg in VALUE_FLAGS and i + 1 < len(argv)
            flags += argv[i:i + 1 + takes_value]
            i += 1 + takes_value
        else:
            overrides.append(arg)
            i += 1
    return flags, overrides


def wait_for_coordinator(address: str, timeout_s: float) -> None:
    """Exits with a one-line error unless process 0's coordinator at `address` accepts connections in time
    (JAX itself would abort the process with a C++ stack trace)."""
    from maze_jax.shell.network import unreachable

    if why := unreachable(address, timeout_s):
        print(f"Error: runner=distributed could not reach the coordinator {address} (process 0): {why}; start "
              f"process 0 first or check runner.coordinator_address", file=sys.stderr, flush=True)
        sys.exit(2)


def waiting_line(kwargs: dict) -> str:
    """What a process says while it waits for its peers (`jax.distributed.initialize`'s arguments)."""
    who = f"process {kwargs['process_id']}" if "process_id" in kwargs else "this process"
    peers = f"{kwargs['num_processes']} processes" if "num_processes" in kwargs else "the other processes"
    where = kwargs.get("coordinator_address") or "the address the cluster provides"
    return (f"Waiting for {peers} to join at {where} ({who}; up to {kwargs['initialization_timeout']} s, "
            "runner.initialization_timeout_s) ...")


def start_distributed(argv: list[str]) -> tuple[list[str], str | None]:
    """With `runner=distributed`, joins the other processes through `jax.distributed.initialize` (before Hydra
    runs, so that only process 0 creates the run directory). Returns the Hydra overrides that keep the other
    processes' own files (Hydra's logs and config copies) out of it, and the temporary folder they go to instead
    (None for process 0 and a run on one process), which the command removes when it ends."""
    if "runner=distributed" not in argv:
        return [], None
    import tempfile

    import jax

    given = {a.split("=", 1)[0]: a.split("=", 1)[1] for a in argv if a.startswith("runner.") and "=" in a}
    kwargs = {}
    for key, env, kind in (("coordinator_address", "JAX_COORDINATOR_ADDRESS", str),
                           ("num_processes", "JAX_NUM_PROCESSES", int), ("process_id", "JAX_PROCESS_ID", int)):
        raw = given.get(f"runner.{key}", "null")
        raw = os.environ.get(env) if raw == "null" else raw
        if raw is not None:
            kwargs[key] = kind(raw)
    kwargs["initialization_timeout"] = int(float(given.get("runner.initialization_timeout_s", 300)))
    print(waiting_line(kwargs), flush=True)
    if kwargs.get("process_id", 0) != 0 and kwargs.get("coordinator_address"):
        wait_for_coordinator(kwargs["coordinator_address"], kwargs["initialization_timeout"])
    jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU hosts; GPUs and TPUs use their own
    try:
        jax.distributed.initialize(**kwargs)
    except Exception as error:  # a wrong address, a missing process, a timeout
        print(f"Error: runner=distributed could not start ({type(error).__name__}: {first_line(error, 300)})",
              file=sys.stderr, flush=True)
        sys.exit(2)
    if jax.process_index() == 0:
        return [], None
    folder = tempfile.mkdtemp(prefix="maze_jax_process_")
    return [f"hydra.run.dir={folder}", "hydra.output_subdir=null", "hydra/job_logging=disabled",
            "hydra/hydra_logging=disabled"], folder


def cli(argv: list[str], command: str = "python -m maze_jax.train") -> None:
    """The training command line: `argv` are its arguments (Hydra flags and overrides). Never returns."""
    answer_help_or_version(argv, CONFIG_NAME, command)
    check_output_dir(argv)
    check_run_dir(argv)
    argv = with_saved_choices(argv)
    overrides, own_folder = start_distributed(argv)
    argv += overrides
    sys.argv[1:] = argv  # Hydra reads its command line from sys.argv
    code = 0
    try:
        run_hydra(main, CONFIG_NAME, argv)
    except SystemExit as stop:  # every exit, a stopped run's too, skips the interpreter's teardown of JAX's threads
        code = stop.code if isinstance(stop.code, int) else 1
    if own_folder is not None:
        shutil.rmtree(own_folder, ignore_errors=True)
    exit_now(code)


if __name__ == "__main__":
    cli(sys.argv[1:])
