"""`maze-run`, Maze's one command: `maze-run -cn conf_train <overrides>` trains, exactly as `python -m maze_jax.train`
does, and `maze-run <overrides>` rolls out (`conf_rollout`, Maze's default), as `python -m maze_jax.rollout`."""

from __future__ import annotations

import sys

from maze_jax.xla_flags import apply_defaults

CONFIGS = ("conf_train", "conf_rollout")


def split_config_name(argv: list[str]) -> tuple[str, list[str]]:
    """The config name `-cn NAME`, `--config-name NAME` or `--config-name=NAME` asks for (default conf_rollout),
    and the other arguments."""
    name, rest, i = "conf_rollout", [], 0
    while i < len(argv):
        if argv[i] in ("-cn", "--config-name") and i + 1 < len(argv):
            name, i = argv[i + 1], i + 2
            continue
        if argv[i].startswith("--config-name="):
            name = argv[i].split("=", 1)[1]
        else:
            rest.append(argv[i])
        i += 1
    return name, rest


def main() -> None:
    name, argv = split_config_name(sys.argv[1:])
    if name not in CONFIGS:
        print(f"Error: -cn {name}: maze-run runs conf_train (training) or conf_rollout (rollouts, the default)",
              file=sys.stderr, flush=True)
        sys.exit(2)
    apply_defaults()  # before anything imports jax
    if name == "conf_train":
        from maze_jax.train import cli
    else:
        from maze_jax.rollout import cli
    cli(argv, f"maze-run -cn {name}" if name == "conf_train" else "maze-run")


if __name__ == "__main__":
    main()
