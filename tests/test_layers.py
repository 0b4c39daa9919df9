"""The package's layers: the maze-run command > entry points > shell > core, imports pointing down only, no
import circle."""

import ast
from pathlib import Path

from conftest import REPO

PACKAGE = REPO / "maze_jax"
COMMAND = {"maze_run"}  # dispatches to the entry points train and rollout
ENTRY = {"train", "rollout", "api", "research", "trained_policy", "cli"}
SHELL = {"session", "settings", "training", "wrappers", "shell", "collectors.host", "collectors.vector_env",
         "collectors.ray_workers"}
# everything else is core: algorithms, collectors (jax_envs), envs, models, evaluation, stats, devices, config, ...


def layer(module: str) -> int:
    """0 core, 1 shell, 2 entry point, 3 command, for a module path relative to the package (`shell.loop`, `envs`)."""
    if module in COMMAND:
        return 3
    if module in ENTRY:
        return 2
    if any(module == s or module.startswith(s + ".") for s in SHELL):
        return 1
    return 0


def imports(path: Path) -> set[str]:
    """The package modules `path` imports, anywhere in it (function-local imports count too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = [node.module or ""] if isinstance(node, ast.ImportFrom) else \
            [a.name for a in node.names] if isinstance(node, ast.Import) else []
        if isinstance(node, ast.ImportFrom) and node.level:
            continue  # the package uses absolute imports only
        found.update(n[len("maze_jax."):] for n in names if n.startswith("maze_jax."))
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
