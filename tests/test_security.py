"""A run directory is data: the code its saved config names runs only when the user named it (or trusts the run)."""

from __future__ import annotations

import os

import pytest
import yaml

from conftest import run_cli
from maze_jax.config import ConfigError
from maze_jax.shell.trust import check_trusted, code_references, named_references

PWN = {"_target_": "os.system", "command": "touch PWNED"}


def test_a_config_names_code_by_target_env_module_and_wrapper_class_path():
    cfg = {"env": {"_target_": "maze_jax.envs.make_env", "name": "my_envs:Foo-v0"},
           "wrappers": {"gymnasium.wrappers.FlattenObservation": {}, "observation_normalization": {}},
           "model": {"_target_": "proj.nets.Net", "networks": [{"_target_": "proj.nets.Head"}]}}
    assert sorted(code_references(cfg)) == sorted([
        ("env._target_", "maze_jax.envs.make_env"), ("env.name", "my_envs"),
        ("wrappers.gymnasium.wrappers.FlattenObservation", "gymnasium.wrappers.FlattenObservation"),
        ("model._target_", "proj.nets.Net"), ("model.networks[0]._target_", "proj.nets.Head")])


def test_only_maze_jax_gymnasium_wrappers_and_what_the_user_names_pass(tmp_path):
    ours = {"env": {"_target_": "maze_jax.envs.make_env", "name": "CartPole-v1"},
            "wrappers": {"gymnasium.wrappers.TimeLimit": {"max_episode_steps": 9}}}
    check_trusted(ours, (), "input_dir='run'")
    with pytest.raises(ConfigError, match=r"^input_dir='run' names code that this command does not: "
                                          r"env._target_='os.system'\. A run directory is data.*trust_input_dir=true"):
        check_trusted({"env": PWN}, (), "input_dir='run'")
    with pytest.raises(ConfigError, match="env.name='evil'"):  # importing a module runs it
        check_trusted({"env": {"_target_": "maze_jax.envs.make_env", "name": "evil:Env-v0"}}, (), "input_dir='run'")
    with pytest.raises(ConfigError, match="maze_jax_evil"):  # a prefix of a name is not the package
        check_trusted({"model": {"_target_": "maze_jax_evil.Net"}}, (), "input_dir='run'")
    # code the command names: an override, or a config in a --config-dir it gives
    (tmp_path / "env").mkdir()
    (tmp_path / "env" / "mine.yaml").write_text("_target_: my_project.envs.make\nname: my_project.ids:Mine-v0\n")
    named = named_references(["+model._target_=my_nets.Net", "env.name='pkg_x:X-v0'"], [str(tmp_path)])
    assert named == {"my_nets.Net", "pkg_x", "my_project.envs.make", "my_project.ids"}
    check_trusted({"env": {"_target_": "my_project.envs.make", "name": "pkg_x:X-v0"},
                   "model": {"_target_": "my_nets.Net"}}, named, "input_dir='run'")
    with pytest.raises(ConfigError, match="my_project.other"):
        check_trusted({"env": {"_target_": "my_project.other"}}, named, "input_dir='run'")


def tampered_run(tmp_path, section: str = "env", value=None) -> str:
    """A run directory someone else prepared: a valid saved config whose `section` names `os.system`."""
    from maze_jax.shell.settings import compose_config, plain

    cfg, _ = compose_config(["env=cartpole", "algorithm=ppo", "runner=dev"])
    saved = plain(cfg)
    saved[section] = PWN if value is None else value
    saved["seeding"] = {"env_base_seed": 0, "agent_base_seed": 0}
    run = tmp_path / "downloaded_run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "hydra_config.yaml").write_text(yaml.safe_dump(saved))
    return str(run)


@pytest.mark.cli
def test_resume_and_rollout_refuse_a_run_directory_that_names_code_nobody_named(tmp_path, cache_dir):
    run = tampered_run(tmp_path)
    for module in ("maze_jax.train", "maze_jax.rollout"):
        proc = run_cli([f"input_dir={run}", f"log_base_dir={tmp_path}/out"], tmp_path, cache_dir, module=module)
        assert proc.returncode == 2, (module, proc.stderr[-2000:])
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and "names code that this command does not: env._target_='os.system'" in lines[0]
        assert not (tmp_path / "PWNED").exists()
    # a setting of the run's env changed on the command line: the run's env (and its code) is still what plays
    proc = run_cli([f"input_dir={run}", f"log_base_dir={tmp_path}/out", "env.max_episode_steps=10"], tmp_path,
                   cache_dir, module="maze_jax.rollout")
    assert proc.returncode == 2 and "names code that this command does not: env._target_='os.system'" in proc.stderr
    # the user's word: the run directory is trusted, and the command goes on (to find no checkpoint in it)
    proc = run_cli([f"input_dir={run}", f"log_base_dir={tmp_path}/out", "trust_input_dir=true"], tmp_path, cache_dir,
                   module="maze_jax.rollout")
    assert proc.returncode == 2 and "names code" not in proc.stderr and "holds no usable checkpoint" in proc.stderr


@pytest.mark.cli
def test_a_config_folder_recorded_in_the_run_directory_is_not_used_unless_named(tmp_path, cache_dir):
    run = tampered_run(tmp_path, "model", {"_target_": "maze_jax.models.FlattenConcatPolicy", "hidden_units": [8]})
    folder = tmp_path / "their_conf" / "env"
    folder.mkdir(parents=True)
    (folder / "evil.yaml").write_text("# @package _global_\nhydra:\n  callbacks:\n    pwn:\n      _target_: os.system\n"
                                      "      command: touch PWNED\n")
    os.makedirs(os.path.join(run, ".hydra"))
    hydra_record = {"hydra": {"runtime": {"choices": {"env": "evil"}, "config_sources": [
        {"path": str(tmp_path / "their_conf"), "schema": "file", "provider": "command-line"}]}}}
    with open(os.path.join(run, ".hydra", "hydra.yaml"), "w") as f:
        yaml.safe_dump(hydra_record, f)
    proc = run_cli([f"input_dir={run}", f"log_base_dir={tmp_path}/out"], tmp_path, cache_dir)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines() == [
        f"Error: input_dir={run!r} was composed with its own config folder {tmp_path / 'their_conf'}: a run directory "
        f"is data, so name the folder yourself (--config-dir {tmp_path / 'their_conf'}), or pass trust_input_dir=true "
        "if you trust the run directory"]
    assert not (tmp_path / "PWNED").exists()


def test_load_policy_refuses_code_the_caller_did_not_name(tmp_path):
    from maze_jax.trained_policy import load_policy

    run = tampered_run(tmp_path, "model", {"_target_": "os.system", "command": "touch PWNED"})
    with pytest.raises(ConfigError, match=r"names code .*model._target_='os.system'.*load_policy\(\.\.\., trust=True\)"):
        load_policy(run)
    with pytest.raises(ConfigError, match="model._target_='os.system'"):
        load_policy(run, trust=["my_project"])  # trusting one package is not trusting all
    assert not (tmp_path / "PWNED").exists()


@pytest.mark.cli
def test_checkpoints_hold_no_pickle(tmp_path, cache_dir):
    proc = run_cli(["env=cartpole", "algorithm=ppo", "runner=dev", "algorithm.n_epochs=1", "algorithm.epoch_length=1",
                    f"log_base_dir={tmp_path}"], tmp_path, cache_dir)
    assert proc.returncode == 0, proc.stderr[-2000:]
    files = [os.path.join(root, f) for root, _, names in os.walk(tmp_path) for f in names if "checkpoints" in root]
    assert files
    for path in files:
        with open(path, "rb") as f:
            head = f.read(2)
        assert not path.endswith((".pkl", ".pickle")), path
        assert not (len(head) == 2 and head[0] == 0x80 and 2 <= head[1] <= 5), path  # pickle's PROTO opcode
