"""What the command lines share: one-line errors with Maze's exit statuses, an early check of the output folder,
and a fast exit."""

from __future__ import annotations

import atexit
import contextlib
import errno
import importlib.util
import logging
import os
import sys
import threading
from typing import Any, Callable

from maze_jax.config import ConfigError, first_line

# `HYDRA_FULL_ERROR=1` as the user set it: show tracebacks instead of one-line errors. `run_hydra` sets it for Hydra
# itself and keeps the user's choice in USER_FULL_ERROR for the processes it starts (a sweep's joblib workers).
USER_FULL_ERROR = "MAZE_JAX_USER_HYDRA_FULL_ERROR"
SHOW_TRACEBACKS = os.environ.get(USER_FULL_ERROR, os.environ.get("HYDRA_FULL_ERROR")) == "1"


class JobFailed(Exception):
    """A job of a sweep that failed (and said why in its own line): the sweep runs its other jobs, then ends with
    this job's exit status."""

    def __init__(self, code: int, line: str):
        super().__init__(code, line)  # both in `args`: it travels back from a worker process (pickled)
        self.code, self.line = code, line

    def __str__(self) -> str:
        return self.line


def run_reporting_errors(body: Callable[[], Any], on_config_error: Callable[[], None] = lambda: None,
                         in_sweep: bool = False) -> Any:
    """Runs `body` and returns what it returns; a ConfigError ends the process with one line on stderr and exit
    status 2 (after `on_config_error`), a stopped run with its own status (130/143 on a signal, 3 on divergence, 4
    when a Python env failed, 5 when its files could not be written, 6 when memory ran out, also outside the
    training loop), a Ctrl-C elsewhere (a rollout) with one line and 130. A job of a sweep (`in_sweep`) raises
    JobFailed instead, so that the sweep's other jobs run; a signal still ends the sweep. `HYDRA_FULL_ERROR=1` shows
    the traceback."""
    from maze_jax.collectors import EnvFailed
    from maze_jax.shell.memory import is_out_of_memory, out_of_memory_line
    from maze_jax.shell.session import RunStopped

    # Hydra sets the root logger to INFO; keep library chatter (Orbax's read-only notices, say) out of the table, and
    # Orbax's own report of a save that failed (a full disk): the run says that in its one line
    logging.getLogger("absl").setLevel(logging.CRITICAL)
    if not SHOW_TRACEBACKS:
        logging.raiseExceptions = False  # a log file on a full disk: no "--- Logging error ---" report per record
        threading.excepthook = quiet_write_failures

    def end(code: int, line: str = ""):
        if line:
            print(line, file=sys.stderr, flush=True)
        if in_sweep and code not in (130, 143):
            raise JobFailed(code, line or f"exit status {code}")
        sys.exit(code)

    try:
        return body()
    except ConfigError as error:
        on_config_error()
        if SHOW_TRACEBACKS:
            raise
        end(2, f"Error: {error}")
    except RunStopped as stopped:
        end(stopped.exit_code)
    except EnvFailed as failed:  # after training (final evaluation, rollouts): the checkpoints are complete
        end(RunStopped.EXIT_CODES[failed.reason], f"Error: {failed}")
    except OSError as error:
        if SHOW_TRACEBACKS or error.errno not in WRITE_FAILURES:
            raise
        # a full disk outside the training loop (which stops on its own, keeping its last checkpoint)
        where = f" ({error.filename})" if error.filename else ""
        end(5, f"Error: could not write the run's files{where}: [Errno {error.errno}] {error.strerror}")
    except KeyboardInterrupt:  # Ctrl-C where no training loop handles it (a rollout): it has nothing to save
        if SHOW_TRACEBACKS:
            raise
        end(130, "\nSIGINT: stopped before the end")
    except Exception as error:  # an allocation that failed outside the training loop (compiling, a final evaluation)
        if SHOW_TRACEBACKS or not is_out_of_memory(error):
            raise
        end(RunStopped.EXIT_CODES["out-of-memory"], f"Error: {out_of_memory_line(error)}")


WRITE_FAILURES = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG)


def quiet_write_failures(args) -> None:
    """`threading.excepthook`: a library's writer thread (TensorBoard's) that failed because the disk is full, or
    whose queue was closed under it after such a failure, ends without a traceback (the run reports the failure in
    its one line, exit status 5); other errors as usual."""
    error = args.exc_value
    if isinstance(error, OSError) and (error.errno in WRITE_FAILURES or str(error) == "handle is closed"):
        return
    threading.__excepthook__(args)


def command_line_config_dirs(hydra_cfg) -> list[str]:
    """The config folders this command gave (`--config-dir`)."""
    return [str(s.path) for s in hydra_cfg.runtime.get("config_sources", [])
            if s.provider == "command-line" and s.schema == "file"]


def override_value(argv: list[str], key: str) -> str:
    """The value a command-line override gives `key`, as Hydra reads it (quotes removed: `input_dir='/a b'`)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    raw = next((a for a in argv if a.lstrip("+").startswith(f"{key}=")), None)
    if raw is None:
        return ""
    try:
        return str(OverridesParser.create().parse_override(raw).value())
    except Exception:  # Hydra reports a malformed override itself
        return raw.split("=", 1)[1]


GROUPS = ("env", "wrappers", "model", "critic", "algorithm", "runner")
_ABSENT = object()


def override_key(override: str) -> str:
    """The key a command-line override sets, adds or deletes: `env.name` of `+env.name=X`, `~env.name`."""
    return override.split("=", 1)[0].lstrip("+~")


def merge_on_resume(saved, saved_choices: dict, composed, given: list[str]):
    """A resumed run's config: the saved run's resolved config with this command's overrides on top, so that a
    chain of resumes keeps every setting of every link.

    `composed` is this command's config as Hydra composed it (the saved run's group choices plus the command's
    overrides). A key the command sets takes its value from there; a group the command switches to another
    option (`algorithm=a2c` after a PPO run) takes that option's whole section, dropping the old option's keys.
    A rollout of a run puts the settings it changes of the run's env and wrappers on them the same way."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf

    merged = OmegaConf.create(OmegaConf.to_container(saved, resolve=True))
    for override in OverridesParser.create().parse_overrides(given):
        key = override.key_or_group
        if key == "input_dir" or key.startswith("hydra"):
            continue
        if override.is_delete():
            parent, _, leaf = key.rpartition(".")
            node = OmegaConf.select(merged, parent) if parent else merged
            if node is not None and leaf in node:
                del node[leaf]
        elif "." not in key and key in GROUPS:
            if saved_choices.get(key) != str(override.value()):  # another option: its section, as composed
                merged[key] = composed.get(key)
        elif (value := OmegaConf.select(composed, key, default=_ABSENT)) is not _ABSENT:
            OmegaConf.update(merged, key, value, merge=False, force_add=True)
    merged.input_dir = composed.input_dir
    return merged


def answer_help_or_version(argv: list[str], config_name: str, command: str) -> None:
    """`--help` (the config groups, keys and exit statuses) and `--version` (maze_jax's, and the libraries' it runs
    on) are answered here, before Hydra starts, and end the process; other arguments return."""
    if any(a in ("--help", "-h") for a in argv):
        from maze_jax.cli_help import usage

        print(usage(config_name, command))
        exit_now(0)
    if "--version" in argv:
        from importlib.metadata import version

        from maze_jax import __version__

        libraries = ", ".join(f"{name} {version(name)}" for name in ("jax", "flax", "hydra-core"))
        print(f"maze_jax {__version__} ({libraries})")
        exit_now(0)


def run_hydra(main: Callable[[], None], config_name: str, argv: list[str]) -> None:
    """Runs a `@hydra.main` function; Hydra's own errors (a misspelt option or key, a bad override, another
    config name) end in one line with exit status 2 instead of Hydra's multi-line report and status 1."""
    import yaml
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    given = next((argv[i + 1] if a in ("-cn", "--config-name") and i + 1 < len(argv) else a.split("=", 1)[1]
                  for i, a in enumerate(argv) if a in ("-cn", "--config-name") or a.startswith("--config-name=")),
                 config_name)
    if given != config_name:
        other = {"conf_train": "python -m maze_jax.train", "conf_rollout": "python -m maze_jax.rollout"}
        print(f"Error: --config-name {given}: this command runs {config_name}"
              + (f"; {given} is {other[given]}'s" if given in other else ""), file=sys.stderr, flush=True)
        sys.exit(2)
    os.environ.setdefault(USER_FULL_ERROR, os.environ.get("HYDRA_FULL_ERROR", ""))
    os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra raises instead of printing its report; we print one line
    logging.getLogger("alembic").setLevel(logging.WARNING)  # the Optuna sweeper's database layer, chatty at INFO
    # JAX's INFO lines, such as "Unable to initialize backend 'tpu'" when the run directory's name is resolved (its
    # env lookup imports gymnax, which makes arrays), once Hydra has set the root logger to INFO
    logging.getLogger("jax").setLevel(logging.WARNING)
    if any("optuna" in a for a in argv) and importlib.util.find_spec("optuna"):  # its "A new study created" notice
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        with hydra_job_reports_left_out(active="--multirun" in argv or "-m" in argv):
            main()
    except JobFailed as failed:  # raised again by the sweeper once every job ran
        after = ("Optuna stopped the study there (hydra.sweeper.max_failure_rate=1.0 goes on past failed trials)"
                 if any("optuna" in a for a in argv) else "the sweep's other jobs ran")
        print(f"Error: a job of the sweep failed ({str(failed).removeprefix('Error: ')}); {after}", file=sys.stderr,
              flush=True)
        sys.exit(failed.code)
    except (HydraException, OmegaConfBaseException) as error:
        if SHOW_TRACEBACKS:
            raise
        from maze_jax.shell.settings import hydra_error_line

        print(f"Error: {hydra_error_line(error)}", file=sys.stderr, flush=True)
        sys.exit(2)
    except ValueError as error:  # a search space the Optuna sweeper cannot use (a log interval from 0, say)
        if SHOW_TRACEBACKS or not raised_in(error, ("optuna", "hydra_plugins")):
            raise
        print(f"Error: the sweeper's search space: {first_line(error)}", file=sys.stderr, flush=True)
        sys.exit(2)
    except yaml.YAMLError as error:  # a config file of the user's (`--config-dir`) that is not valid YAML
        if SHOW_TRACEBACKS:
            raise
        print(f"Error: {yaml_error_line(error)}", file=sys.stderr, flush=True)
        sys.exit(2)
    except OSError as error:  # Hydra could not create the run directory (under a file, too long, read-only)
        if SHOW_TRACEBACKS:
            raise
        print(f"Error: the run directory {override_value(argv, 'hydra.run.dir') or ''} cannot be created: "
              f"{error.strerror or type(error).__name__}: {error.filename or ''}", file=sys.stderr, flush=True)
        sys.exit(2)


def raised_in(error: BaseException, packages: tuple) -> bool:
    """Whether `error` was raised in code of one of `packages` (by the file of its traceback's last frame)."""
    import traceback

    frames = traceback.extract_tb(error.__traceback__)
    return bool(frames) and any(f"{os.sep}{p}{os.sep}" in frames[-1].filename for p in packages)


class _WithoutJobReports:
    """stderr without Hydra's 'Error executing job with overrides: [...]' line (the failed job said why already)."""

    def __init__(self, stream):
        self.stream = stream

    def write(self, text: str) -> int:
        if text.startswith("Error executing job with overrides"):
            return len(text)
        return self.stream.write(text)

    def __getattr__(self, name):
        return getattr(self.stream, name)


@contextlib.contextmanager
def hydra_job_reports_left_out(active: bool = True):
    """Within the block, Hydra's report of a failed job of a sweep (`active`) is left out of stderr (unless
    tracebacks are asked for)."""
    if SHOW_TRACEBACKS or not active:
        yield
        return
    stream = sys.stderr
    sys.stderr = _WithoutJobReports(stream)
    try:
        yield
    finally:
        sys.stderr = stream


def yaml_error_line(error) -> str:
    """A YAML parser's error in one line: the file, where in it, and what is wrong."""
    mark = getattr(error, "problem_mark", None)
    where = f"{mark.name}, line {mark.line + 1}, column {mark.column + 1}" if mark is not None else "a config file"
    problem = " ".join(str(p) for p in (getattr(error, "context", None), getattr(error, "problem", None)) if p)
    return f"invalid YAML in {where}: {problem or first_line(error)}"


# Output folders as they were before this command (`note_folders`): hydra.run.dir named on the command line -> the
# entries it held (None: it did not exist); and whether log_base_dir existed.
_BEFORE: dict[str, set | None] = {}
_BASE: dict[str, bool] = {}
HYDRA_FILES = (".hydra/config.yaml", ".hydra/hydra.yaml", ".hydra/overrides.yaml")  # what Hydra writes at start


def _entries(folder: str) -> set:
    """The names in `folder` and in its `.hydra/`."""
    names = set(os.listdir(folder))
    hydra = os.path.join(folder, ".hydra")
    if os.path.isdir(hydra) and not os.path.islink(hydra):
        names |= {f".hydra/{n}" for n in os.listdir(hydra)}
    return names


def note_folders(argv: list[str]) -> None:
    """Notes, before Hydra creates anything, what a `hydra.run.dir` named on the command line holds and whether
    `log_base_dir` exists, for `remove_created`."""
    given = override_value(argv, "hydra.run.dir")
    if given and "${" not in given:
        path = os.path.abspath(os.path.expanduser(given))
        _BEFORE[path] = _entries(path) if os.path.isdir(path) else None
    base = os.path.abspath(os.path.expanduser(override_value(argv, "log_base_dir") or "outputs"))
    _BASE[base] = os.path.isdir(base)


def remove_created(out_dir: str, own_files: tuple) -> None:
    """After a command failed before doing its work: removes what it created in `out_dir` (Hydra's records and
    `own_files`), then the folders it made if they are empty: `out_dir`, its parents up to `log_base_dir`, and
    `log_base_dir`. What was there before stays: a folder named by `hydra.run.dir` (even `.`) keeps all it held, a
    `log_base_dir` that existed stays."""
    out_dir = os.path.abspath(out_dir)
    named = out_dir in _BEFORE
    before = _BEFORE.get(out_dir) or set()
    for name in (*HYDRA_FILES, ".hydra", *own_files):
        path = os.path.join(out_dir, name)
        if name in before or os.path.islink(path):
            continue
        if os.path.isfile(path):
            os.remove(path)
        elif os.path.isdir(path) and not os.listdir(path):
            os.rmdir(path)
    if named:  # the user's folder, unless this command made it
        folders = [out_dir] if _BEFORE[out_dir] is None else []
    else:  # folders of ours: the run's, the ones above it up to log_base_dir, and that one if it is new
        folders, base = [out_dir], next(iter(_BASE), None)
        while base and os.path.dirname(folders[-1]) != folders[-1] and folders[-1].startswith(base + os.sep):
            folders.append(os.path.dirname(folders[-1]))
        if not base or folders[-1] != base or _BASE[base]:
            folders = [f for f in folders if f != base]
    for folder in folders:
        if os.path.isdir(folder) and not os.listdir(folder):
            os.rmdir(folder)
        else:
            break


def check_output_dir(argv: list[str]) -> None:
    """Fails early, in one line, when `log_base_dir`, or a `hydra.run.dir` or `hydra.sweep.dir` given, cannot be
    created or written (a read-only folder or file system: Hydra would fail with a traceback)."""
    base = next((a.split("=", 1)[1] for a in argv if a.lstrip("+").startswith("log_base_dir=")), "outputs")
    folders = [("log_base_dir", base)] + [(key, override_value(argv, key)) for key in ("hydra.run.dir",
                                                                                       "hydra.sweep.dir")]
    for key, given in folders:
        if not given:
            continue
        path = os.path.abspath(os.path.expanduser(given))
        while not os.path.exists(path):
            path = os.path.dirname(path)
        if not os.path.isdir(path) or not os.access(path, os.W_OK):
            print(f"Error: {key}={given!r} cannot be created or written ({path} is not a writable directory)",
                  file=sys.stderr, flush=True)
            sys.exit(2)


def exit_now(code: int = 0) -> None:
    """Ends the process without the interpreter's teardown, which frees JAX's and XLA's objects one by one (0.3 to
    0.5 s on a 2-core CPU). Exit handlers (Hydra's log file, jax.distributed's shutdown) and output flushing run
    first, as in a normal exit. Child processes still alive (a sweep launcher's idle workers, which exit handlers
    would wait minutes for) are ended first: no child outlives the command."""
    if "multiprocessing" in sys.modules:
        for child in sys.modules["multiprocessing"].active_children():
            child.terminate()
    if code and not SHOW_TRACEBACKS:  # a failed run said why: a library's exit handler that fails too (TensorBoard's
        sys.unraisablehook = lambda unraisable: None  # writer flushing to a full disk) adds nothing
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except OSError:
            pass
    os._exit(code)
