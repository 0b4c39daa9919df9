"""The package's layers, read off its tree: the maze-run command > entry points (the package's top-level modules) >
the shell (`shell/`) > the core (`algorithms/`, `collectors/`, `envs/`, `models/` and `config.py`). Imports point
down only, function-local ones included, and no module imports itself back through a circle."""

import ast
from pathlib import Path

from conftest import REPO

PACKAGE = REPO / "maze_jax"
COMMAND = {"maze_run"}  # dispatches to the entry points train and rollout
CORE_FOLDERS = {"algorithms", "collectors", "envs", "models"}
# ConfigError and typed reads, which every layer uses; the XLA flags the package sets when it is imported (no imports
# of its own but os and sys)
CORE_MODULES = {"config", "xla_flags"}
# Libraries of the shell's work (threads, processes, files, Hydra, logging): the core imports none of them.
SHELL_LIBRARIES = {"threading", "subprocess", "multiprocessing", "queue", "signal", "ray", "hydra", "omegaconf",
                   "tensorboardX", "orbax", "mlflow", "matplotlib", "tqdm"}


def layer(module: str) -> int:
    """0 core, 1 shell, 2 entry point, 3 command, for a module path relative to the package (`shell.loop`, `envs`)."""
    top = module.split(".")[0]
    if module in COMMAND:
        return 3
    if top == "shell":
        return 1
    if top in CORE_FOLDERS or module in CORE_MODULES or module == "":
        return 0
    return 2  # the other top-level modules: train, rollout, api, research, trained_policy, cli, ...


def imports(path: Path, package: bool = True) -> set[str]:
    """The package modules `path` imports (other libraries' top-level names with `package=False`), anywhere in
    it: function-local imports count too."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = [node.module or ""] if isinstance(node, ast.ImportFrom) else \
            [a.name for a in node.names] if isinstance(node, ast.Import) else []
        if isinstance(node, ast.ImportFrom) and node.level:
            continue  # the package uses absolute imports only
        if package:
            found.update(n[len("maze_jax."):] for n in names if n.startswith("maze_jax."))
        else:
            found.update(n.split(".")[0] for n in names if not n.startswith("maze_jax"))
    return found


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_imports_point_down_only():
    upward = []
    for path in PACKAGE.rglob("*.py"):
        name = module_name(path)
        for target in imports(path):
            if layer(target) > layer(name):
                upward.append(f"{name} -> {target}")
    assert not upward, upward


def test_the_core_does_no_shell_work():
    """The core's folders hold pure functions: no threads, processes, Hydra, files' formats or consoles."""
    found = [f"{module_name(path)} imports {library}" for path in PACKAGE.rglob("*.py")
             if layer(module_name(path)) == 0 for library in imports(path, package=False) & SHELL_LIBRARIES]
    assert not found, found


def test_the_top_level_holds_entry_points_only():
    """A module that is neither an entry point nor the shared config helpers lives in its layer's folder."""
    top = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__"}
    entry = {"train", "rollout", "api", "research", "trained_policy", "cli", "cli_help"}
    assert top == entry | COMMAND | CORE_MODULES, top ^ (entry | COMMAND | CORE_MODULES)
    folders = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    assert folders == CORE_FOLDERS | {"shell"}, folders


def test_no_import_circle():
    modules = {module_name(path): path for path in PACKAGE.rglob("*.py")}

    def resolve(target: str) -> str:
        while target and target not in modules:
            target = target.rpartition(".")[0]
        return target

    graph = {name: {resolve(t) for t in imports(path)} - {"", name} for name, path in modules.items()}
    state, circles = {}, []

    def visit(name, trail):
        state[name] = "open"
        for target in sorted(graph[name]):
            if state.get(target) == "open":
                circles.append(trail[trail.index(target):] + [target])
            elif target not in state:
                visit(target, trail + [target])
        state[name] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert not circles, circles
