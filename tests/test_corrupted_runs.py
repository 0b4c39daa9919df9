"""Every file of a run directory deleted, truncated, emptied, overwritten with random bytes or given wrong types:
a resume either goes on from the newest usable checkpoint (naming what it skipped) or refuses in one line."""

from __future__ import annotations

import copy
import random
import shutil

import jax
import pytest
import yaml

from conftest import run_cli
from maze_jax.config import ConfigError
from test_cli import only_run_dir

SMALL = ["env=cartpole", "algorithm=ppo", "runner=dev", "runner.concurrency=4", "algorithm.n_rollout_steps=16",
         "algorithm.batch_size=16", "algorithm.epoch_length=1", "model.hidden_units=[8]", "runner.stop_when_solved=false",
         "seeding.agent_base_seed=1", "seeding.env_base_seed=2", "runner.checkpoint_every_s=0", "runner.dump_interval=1"]


@pytest.fixture(scope="module")
def intact_run(tmp_path_factory, cache_dir):
    """A run of 2 epochs: a latest checkpoint, an older one to fall back to, and the best model (a third epoch's
    checkpoint would repeat the older one's files: 80 more resumes, about 30 s on 2 cores)."""
    base = tmp_path_factory.mktemp("intact")
    proc = run_cli([*SMALL, "algorithm.n_epochs=2", f"log_base_dir={base}"], base, cache_dir)
    assert proc.returncode == 0, proc.stderr
    return only_run_dir(base)


COMPOSED = {}  # the package's config composed with a resume's overrides (apart from input_dir), by overrides


def resume(run_dir) -> list[str]:
    """What a resume of `run_dir` does up to its first epoch, in this process: the config (saved config and group
    choices), the compatibility check, the normalisation statistics, the build and the restore. Returns the lines
    the restore said; a refusal raises its ConfigError."""
    from hydra import compose, initialize_config_dir

    from maze_jax import train
    from maze_jax.shell.session import build, check_compatible, restore
    from maze_jax.shell.settings import read_settings
    from maze_jax.shell.resume import stored_statistics

    said = []
    echo = lambda *a, **k: said.append(" ".join(map(str, a)))  # noqa: E731
    flags, overrides = train.split_flags(train.with_saved_choices([f"input_dir={run_dir}", "algorithm.n_epochs=9"]))
    key = tuple(o for o in overrides if not o.startswith("input_dir="))
    if key not in COMPOSED:  # the package's configs and the overrides are all it reads
        with initialize_config_dir(str(train.os.path.join(train.os.path.dirname(train.__file__), "conf")),
                                   version_base=None):
            COMPOSED[key] = compose("conf_train", overrides=overrides)
    composed = copy.deepcopy(COMPOSED[key])
    composed.input_dir = str(run_dir)
    cfg = train.resume_config(str(run_dir), composed, overrides)
    settings = read_settings(cfg)
    check_compatible(str(run_dir), cfg)
    _, trainer = build(settings, statistics=stored_statistics(str(run_dir)), echo=echo)
    key = jax.random.key(0)
    said.clear()  # the build's lines (what steps the env) are not the restore's
    restore(str(run_dir), trainer, jax.eval_shape(trainer.init, key, key), echo)
    return said


def corrupt(path, mode: str, rng: random.Random) -> None:
    data = path.read_bytes()
    if mode == "delete":
        path.unlink()
    elif mode == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif mode == "empty":
        path.write_bytes(b"")
    elif mode == "random":
        path.write_bytes(bytes(rng.randrange(256) for _ in range(max(len(data), 16))))
    elif mode == "types":  # YAML or JSON that parses, with strings where numbers were and lists where maps were
        try:
            loaded = yaml.safe_load(data)
        except Exception:
            loaded = None
        path.write_text(yaml.safe_dump(wrong_types(loaded)) if loaded is not None else '{"epoch": "three"}')


def wrong_types(node):
    if isinstance(node, dict):
        return {k: wrong_types(v) for k, v in node.items()}
    if isinstance(node, list):
        return {"was": "a list"}
    if isinstance(node, bool) or node is None:
        return node
    if isinstance(node, (int, float)):
        return f"number {node}"
    return node


MODES = ("delete", "truncate", "empty", "random", "types")


def resume_corrupted(intact_run, tmp_path, sample: int = 1) -> dict:
    """Resumes a copy of `intact_run` with each of its files (every `sample`-th one, and the saved config) corrupted
    in each way; asserts each resumes or refuses in one line. Returns how many resumed and how many were refused."""
    assert resume(intact_run)[-1].startswith(f"Resumed {intact_run} at epoch 2")
    files = sorted(p.relative_to(intact_run) for p in intact_run.rglob("*") if p.is_file())
    assert len(files) > 30 and {f.parts[:2] for f in files if f.parts[0] in ("checkpoints", "best")} == {
        ("checkpoints", "1"), ("checkpoints", "2"), ("best", "2")}, files
    files = [f for i, f in enumerate(files) if i % sample == 0 or f.name == "hydra_config.yaml"]
    rng, outcomes = random.Random(0), {"resumed": 0, "refused": 0}
    for i, relative in enumerate(files):
        for mode in MODES:
            copy = tmp_path / f"{i}-{mode}"
            shutil.copytree(intact_run, copy)
            corrupt(copy / relative, mode, rng)
            case = f"{relative} {mode}"
            try:
                said = resume(copy)
            except ConfigError as error:
                assert "\n" not in str(error), case
                outcomes["refused"] += 1
            else:
                assert said and said[-1].startswith(f"Resumed {copy}"), (case, said)
                assert all("\n" not in line for line in said), case
                outcomes["resumed"] += 1
            shutil.rmtree(copy)
    return outcomes


@pytest.mark.fuzz
def test_every_corrupted_file_gives_a_resume_or_one_line(intact_run, tmp_path):
    outcomes = resume_corrupted(intact_run, tmp_path)
    # the essential files refuse; most others are skipped in favour of another checkpoint
    assert outcomes["resumed"] > outcomes["refused"] > 0, outcomes


def test_a_sample_of_corrupted_files_gives_a_resume_or_one_line(intact_run, tmp_path):
    """The fast tier's share of the sweep above: every sixth file, and the saved config, in every way."""
    outcomes = resume_corrupted(intact_run, tmp_path, sample=6)
    assert outcomes["resumed"] > 0 and outcomes["refused"] > 0, outcomes


def test_a_corrupt_latest_checkpoint_falls_back_to_an_older_one_and_says_so(intact_run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(intact_run, copy)
    (copy / "checkpoints" / "2" / "meta" / "metadata").write_text("{broken")
    said = resume(copy)
    assert said[0].startswith("Skipped checkpoints/2 (") and said[0].endswith(": using checkpoints/1 (epoch 1)")
    assert said[-1].startswith(f"Resumed {copy} at epoch 1")


def test_latest_checkpoints_deleted_by_hand_are_named_before_the_best_model_is_used(intact_run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(intact_run, copy)
    best_epoch = int(next((copy / "best").iterdir()).name)
    for step in (copy / "checkpoints").iterdir():
        shutil.rmtree(step)
    said = resume(copy)
    assert said[0] == (f"Skipped checkpoints/ (no complete checkpoint: deleted, or its save was cut short): using "
                       f"best/{best_epoch} (epoch {best_epoch})")
    assert said[-1].startswith(f"Resumed {copy} at epoch {best_epoch}")


def test_a_resumed_run_without_latest_checkpoints_goes_on_from_its_parents_newer_one(intact_run, tmp_path):
    parent, child = tmp_path / "parent", tmp_path / "child"
    shutil.copytree(intact_run, parent)
    shutil.copytree(intact_run, child)  # as a resume of `parent` killed in its first save: its best model only
    shutil.rmtree(child / "checkpoints")
    config = (child / "hydra_config.yaml").read_text()
    assert "input_dir: ''" in config
    (child / "hydra_config.yaml").write_text(config.replace("input_dir: ''", f"input_dir: {parent}"))
    said = resume(child)
    assert said[0] == (f"Skipped checkpoints/ (no complete checkpoint: deleted, or its save was cut short): using "
                       f"{parent / 'checkpoints' / '2'} (epoch 2)")
    assert said[-1].startswith(f"Resumed {child} at epoch 2")


def test_a_corrupt_best_model_does_not_block_a_resume(intact_run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(intact_run, copy)
    for f in (copy / "best").rglob("*"):
        if f.is_file():
            f.write_bytes(b"\0\0")
    said = resume(copy)
    assert any(line.startswith("No usable best model") for line in said)
    assert said[-1].startswith(f"Resumed {copy} at epoch 2 (best -inf")


def test_the_cli_says_one_line_and_no_background_noise_for_a_run_with_nothing_usable(intact_run, tmp_path, cache_dir):
    copy = tmp_path / "run"
    shutil.copytree(intact_run, copy)
    for f in list((copy / "checkpoints").rglob("*")) + list((copy / "best").rglob("*")):
        if f.is_file() and f.name == "manifest.ocdbt":  # TensorStore's reads fail mid-flight: the noisy kind
            f.write_text("not a manifest")
    proc = run_cli([f"input_dir={copy}", f"log_base_dir={tmp_path / 'out'}"], tmp_path, cache_dir)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith(f"Error: input_dir='{copy}' holds no usable checkpoint (checkpoints/2 (")
    assert proc.stderr.count("\n") == 1, proc.stderr  # nothing from Orbax's or asyncio's threads after it
