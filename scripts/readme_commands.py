"""Runs every command line the README shows, as a reader would type it, and checks that it does what the README
says: `python scripts/readme_commands.py` (this checkout's installed package), or `--fresh-clone` (a clone of this
repository's HEAD, installed with the quickstart's `pip install .` into a new virtual environment).

Each command runs in one scratch folder, so that `outputs/...` paths in the README are that folder's, on a bounded
budget: one epoch (`algorithm.n_epochs=1`), two rollout episodes, two Optuna trials; every other override stays as
typed. `<run>` and the README's example run folders (`outputs/CartPole-v1-flatten_concat-es-local/<time>`) become a
run the commands above made. A `runner=distributed` command starts every process it names on this machine. A shown
mistake (`$ python -m ...` followed by its output) must end with exit status 2 and print that line. A command that
needs an extra which is not installed is skipped, and said so. Exits non-zero when a command fails; the claims the
README makes about results are `scripts/readme_claims.py`'s.
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from typing import NamedTuple

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
COMMAND = re.compile(r"^(\$ )?(python -m maze_jax\.(train|rollout)|maze-run)\b")
EXAMPLE_RUN = re.compile(r"outputs/([^/\s]+)/(\d{4}-\d\d-\d\d_[\d-]+|<run>)")
# what a command needs beyond the core install, by what it names
EXTRAS = {"+experiment=optuna": ("hydra_plugins.hydra_optuna_sweeper", "sweep"),
          "+experiment=grid_search": ("hydra_plugins.hydra_joblib_launcher", "sweep"),
          "runner=ray": ("ray", "ray"), "env=popgym": ("popgym", "popgym")}
BUDGET = {"train": {"algorithm.n_epochs": "1", "hydra.sweeper.n_trials": "2"},
          "rollout": {"runner.n_episodes": "2", "runner.render_episodes": "1"}}


class Command(NamedTuple):
    text: str  # as the README shows it (continuation lines joined, comment dropped)
    kind: str  # train or rollout
    error: str  # for a shown mistake: the line it prints; else ''
    folder: str  # where it runs: '' (any folder) or the repository's folder a `cd` line of its block went to


def readme_commands(readme: str) -> list[Command]:
    """Every `python -m maze_jax.train|rollout` and `maze-run` line of the README's code blocks, in order."""
    found = []
    for block in re.findall(r"```[a-z]*\n(.*?)```", readme, re.S):
        lines, folder = block.replace("\\\n", " ").splitlines(), ""
        for i, line in enumerate(lines):
            if line.startswith("cd "):
                folder = line[3:].strip()
            if not (match := COMMAND.match(line)):
                continue
            text = re.split(r"\s+#\s", line[len(match.group(1) or ""):])[0].strip()
            shown = match.group(1) and i + 1 < len(lines) and lines[i + 1].startswith("Error:")
            is_rollout = match.group(3) == "rollout" or match.group(2) == "maze-run" and "-cn conf_train" not in text
            found.append(Command(" ".join(text.split()), "rollout" if is_rollout else "train",
                                 lines[i + 1] if shown else "", folder))
    return found


def needs(command: Command, python: str = sys.executable) -> str:
    """'' when everything the command uses is installed for `python`; else the extra it needs."""
    for key, (module, extra) in EXTRAS.items():
        if key in command.text.split():
            probe = f"import importlib.util, sys; sys.exit(importlib.util.find_spec({module!r}) is None)"
            if subprocess.run([python, "-c", probe], capture_output=True).returncode:  # None, or its parent missing
                return extra
    return ""


def bounded(command: Command, runs: dict[str, str], named: str) -> list[str]:
    """The command's argv on the script's budget, with the README's run folders replaced by runs made here: an
    example folder (`outputs/<group>/<time or <run>>`) by the newest run of its group, a bare `<run>` by the run the
    commands before it named (`named`)."""
    def run_for(match: re.Match) -> str:
        if match.group(1) not in runs:
            raise LookupError(f"no run of {match.group(1)} was made by an earlier command")
        return runs[match.group(1)]

    text = EXAMPLE_RUN.sub(run_for, command.text)
    if "<run" in text and not named:
        raise LookupError("<run>: no earlier command named a run")
    words = shlex.split(text.replace("<run_dir>", named).replace("<run>", named))
    program = words[:3] if words[0] == "python" else words[:1]
    args = words[len(program):]
    budget = {} if command.error else dict(BUDGET[command.kind])
    if "+experiment=optuna" not in args:
        budget.pop("hydra.sweeper.n_trials", None)
    if "runner.render=true" not in args:
        budget.pop("runner.render_episodes", None)
    return [*program, *(a for a in args if a.split("=")[0] not in budget), *(f"{k}={v}" for k, v in budget.items())]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def execute(argv: list[str], cwd: str, python: str) -> subprocess.CompletedProcess:
    """Runs one command (every process of a `runner=distributed` one)."""
    argv = [python, *argv[1:]] if argv[0] == "python" else [os.path.join(os.path.dirname(python), argv[0]), *argv[1:]]
    if "runner=distributed" not in argv:
        return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=1800)
    n = int(next(a for a in argv if a.startswith("runner.num_processes=")).split("=")[1])
    base = [a for a in argv if not a.startswith(("runner.coordinator_address=", "runner.process_id="))]
    base.append(f"runner.coordinator_address=127.0.0.1:{free_port()}")
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    procs = [subprocess.Popen([*base, f"runner.process_id={i}"], cwd=cwd, env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for i in range(n)]
    outs = [p.communicate(timeout=1800) for p in procs]
    code = max(p.returncode for p in procs)
    return subprocess.CompletedProcess(argv, code, outs[0][0], "".join(err for _, err in outs))


def newest_runs(outputs: str) -> dict[str, str]:
    """{run group folder: its newest run} under `outputs`."""
    runs = {}
    for folder in glob.glob(os.path.join(outputs, "*", "*", "hydra_config.yaml")):
        run = os.path.dirname(folder)
        group = os.path.basename(os.path.dirname(run))
        if group not in runs or run > runs[group]:
            runs[group] = run
    return runs


def fresh_install(tmp: str) -> tuple[str, str]:
    """A clone of HEAD with `pip install .` in a new virtual environment: (its python, seconds)."""
    clone = os.path.join(tmp, "clone")
    subprocess.run(["git", "clone", "-q", REPO, clone], check=True)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "venv", os.path.join(tmp, "venv")], check=True)
    python = os.path.join(tmp, "venv", "bin", "python")
    subprocess.run([python, "-m", "pip", "install", "-q", "."], cwd=clone, check=True)
    return python, f"{time.perf_counter() - start:.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fresh-clone", action="store_true", help="install a clone of HEAD into a new venv first")
    options = parser.parse_args()
    with open(os.path.join(REPO, "README.md")) as f:
        commands = readme_commands(f.read())
    failed, skipped = [], 0
    with tempfile.TemporaryDirectory() as tmp:
        python, root = sys.executable, REPO
        if options.fresh_clone:
            python, seconds = fresh_install(tmp)
            root = os.path.join(tmp, "clone")
            print(f"installed a fresh clone in {seconds} s", flush=True)
        named = ""
        for command in commands:
            work = os.path.join(tmp, "work", command.folder)
            if not os.path.isdir(work):  # a copy of the repository's folder: its runs stay out of the checkout
                shutil.copytree(os.path.join(root, command.folder), work) if command.folder else os.makedirs(work)
            if extra := needs(command, python):
                print(f"skip {command.text}  (needs pip install '.[{extra}]')", flush=True)
                skipped += 1
                continue
            try:
                argv = bounded(command, newest_runs(os.path.join(work, "outputs")), named)
            except LookupError as error:
                print(f"FAIL {command.text}: {error}", flush=True)
                failed.append(command.text)
                continue
            named = next((a.split("=", 1)[1] for a in argv if a.startswith("input_dir=")), named)
            start = time.perf_counter()
            proc = execute(argv, work, python)
            seconds = time.perf_counter() - start
            ok = proc.returncode == 2 and command.error in proc.stderr.splitlines() if command.error else \
                proc.returncode == 0
            print(f"{'ok  ' if ok else 'FAIL'} {seconds:6.1f} s  {' '.join(argv)}", flush=True)
            if not ok:
                print("     " + "\n     ".join((proc.stderr or proc.stdout).strip().splitlines()[-5:]), flush=True)
                failed.append(command.text)
    print(f"{len(commands) - len(failed) - skipped} of {len(commands)} README commands ran as the README says, "
          f"{skipped} skipped (extras not installed), {len(failed)} failed", flush=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
