"""Nothing a user has is replaced or deleted: a run directory that holds a run, the files of a folder a failed
command was pointed at, files reached through a symbolic link planted in a run directory."""

from __future__ import annotations

import os

import pytest

from conftest import run_cli

pytestmark = pytest.mark.cli

TINY = ["env=cartpole", "algorithm=ppo", "runner=dev", "algorithm.n_epochs=1", "algorithm.epoch_length=1"]


def snapshot(folder) -> dict:
    """Every file under `folder` with its bytes."""
    return {os.path.relpath(os.path.join(root, f), folder): open(os.path.join(root, f), "rb").read()
            for root, _, names in os.walk(folder) for f in names}


def test_a_fresh_run_pointed_at_a_finished_run_is_refused_and_leaves_it_as_it_was(tmp_path, cache_dir):
    run = tmp_path / "my_run"
    proc = run_cli([*TINY, f"hydra.run.dir={run}"], tmp_path, cache_dir)
    assert proc.returncode == 0, proc.stderr[-2000:]
    before = snapshot(run)
    assert ".hydra/config.yaml" in before and "hydra_config.yaml" in before
    proc = run_cli([*TINY, "algorithm.lr=0.5", f"hydra.run.dir={run}"], tmp_path, cache_dir)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"Error: hydra.run.dir={str(run)!r} already holds a run: resume it into a new run directory with "
        f"input_dir={run} (and no hydra.run.dir), or choose another hydra.run.dir"]
    assert snapshot(run) == before  # its config, checkpoints and Hydra's records untouched


def test_a_failed_command_removes_only_what_it_created(tmp_path, cache_dir):
    mine = tmp_path / "notes"
    (mine / ".hydra").mkdir(parents=True)
    (mine / ".hydra" / "my_notes.txt").write_text("kept")
    (mine / "train.log").write_text("my own log")
    proc = run_cli([*TINY, "algorithm.lr=-1", f"hydra.run.dir={mine}"], tmp_path, cache_dir)
    assert proc.returncode == 2 and "algorithm.lr" in proc.stderr
    assert (mine / ".hydra" / "my_notes.txt").read_text() == "kept"
    assert (mine / "train.log").read_text().startswith("my own log")
    assert not (mine / ".hydra" / "config.yaml").exists()  # Hydra's record of the failed command is gone
    work = tmp_path / "work"
    work.mkdir()
    (work / "data.csv").write_text("1,2")
    proc = run_cli([*TINY, "algorithm.lr=-1", "hydra.run.dir=."], work, cache_dir)
    assert proc.returncode == 2
    assert sorted(os.listdir(work)) == ["data.csv"]  # the working folder and its file stay; Hydra's files go
    proc = run_cli([*TINY, "algorithm.lr=-1", f"hydra.run.dir={tmp_path / 'new_folder'}"], tmp_path, cache_dir)
    assert proc.returncode == 2 and not (tmp_path / "new_folder").exists()  # made by the command: removed


@pytest.mark.parametrize("name", ["train.log", ".lock"])
def test_a_run_never_writes_through_a_symbolic_link_in_its_run_directory(tmp_path, cache_dir, name):
    victim = tmp_path / "precious.txt"
    victim.write_text("do not touch")
    run = tmp_path / "planted"
    run.mkdir()
    os.symlink(victim, run / name)
    proc = run_cli([*TINY, f"hydra.run.dir={run}"], tmp_path, cache_dir)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and f"{run / name} is a symbolic link" in lines[0], lines
    assert victim.read_text() == "do not touch"
    assert os.path.islink(run / name)  # and the link itself is the user's: kept
