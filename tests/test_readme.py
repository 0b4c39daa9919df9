"""The README's Python examples run as written, in order, as one reader would paste them."""

import os
import re
from pathlib import Path

import pytest

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()
BLOCKS = re.findall(r"```python\n(.*?)```", README, re.S)


@pytest.mark.cli
def test_readme_python_blocks_run_in_order(tmp_path):
    assert len(BLOCKS) >= 4
    namespace = {}
    cwd = os.getcwd()
    os.chdir(tmp_path)  # run directories land here
    try:
        for i, code in enumerate(BLOCKS):
            exec(compile(code, f"README.md block {i}", "exec"), namespace)
    finally:
        os.chdir(cwd)
    assert namespace["rc"].result.progress.epoch == 3
    assert namespace["action"] in (0, 1)
    assert namespace["metrics"]["train_BaseEnvEvents/reward/mean"].shape[0] == 4
    assert namespace["history"]["value_change"].shape == (3,)  # a custom loss's auxiliary metric, per epoch
    assert (tmp_path / "outputs" / "research_run" / "hydra_config.yaml").exists()  # train.save wrote a run


def test_every_claim_that_the_readme_makes_is_checked_by_the_claims_script():
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    from readme_claims import CLAIMS

    text = " ".join(README.split())
    for claim in CLAIMS:  # scripts/readme_claims.py runs each command and checks these words
        assert " ".join(claim.readme.split()) in text, claim.name
    assert {claim.name for claim in CLAIMS} >= {"quickstart", "ppo", "pendulum", "cutting", "lunarlander"}


def test_every_readme_command_is_run_on_a_bounded_budget_by_the_commands_script():
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    from readme_commands import EXAMPLE_RUN, bounded, readme_commands

    commands = readme_commands(README)
    typed = [line for block in re.findall(r"```[a-z]*\n(.*?)```", README, re.S) for line in block.splitlines()
             if re.match(r"(\$ )?(python -m maze_jax\.(train|rollout)|maze-run)\b", line)]
    assert len(commands) == len(typed) >= 40  # every one the README shows
    groups = {m.group(1): f"/runs/{m.group(1)}/1" for c in commands for m in EXAMPLE_RUN.finditer(c.text)}
    for command in commands:
        if command.folder:  # a `cd` into one of the repository's folders
            assert (Path(__file__).resolve().parents[1] / command.folder).is_dir()
        argv = bounded(command, groups, "/runs/named")
        assert "<run" not in " ".join(argv) and "2026-" not in " ".join(argv)  # example folders replaced
        keys = [a.split("=")[0] for a in argv]
        if command.error:  # a shown mistake runs exactly as typed
            assert command.kind == "train" and command.error.startswith("Error: ") and "algorithm.n_epochs" not in keys
        elif command.kind == "train":
            assert keys.count("algorithm.n_epochs") == 1 and "algorithm.n_epochs=1" in argv
            assert ("hydra.sweeper.n_trials=2" in argv) == ("+experiment=optuna" in argv)
        else:
            assert "runner.n_episodes=2" in argv and keys.count("runner.n_episodes") == 1
    assert {c.kind for c in commands} == {"train", "rollout"}
    assert sum(bool(c.error) for c in commands) >= 1
    maze_rollout = next(c for c in commands if c.text == "maze-run env=gym_env env.name=CartPole-v0")
    assert maze_rollout.kind == "rollout"  # Maze's rollout command, without -cn conf_train
