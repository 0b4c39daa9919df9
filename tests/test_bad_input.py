"""Bad input ends in one line, the right exit status and no run directory left behind."""

from __future__ import annotations

import pytest

from conftest import run_cli

pytestmark = pytest.mark.cli


def test_invalid_yaml_in_a_config_folder_is_one_line(tmp_path, cache_dir):
    (tmp_path / "conf" / "env").mkdir(parents=True)
    (tmp_path / "conf" / "env" / "bad.yaml").write_text("_target_: maze_jax.envs.make_env\nname: [CartPole-v1\n")
    proc = run_cli(["--config-dir", "conf", "env=bad", "runner=dev", f"log_base_dir={tmp_path}/outputs"], tmp_path,
                   cache_dir)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"Error: invalid YAML in {tmp_path / 'conf' / 'env' / 'bad.yaml'}, "
                                                   "line 3"), lines
    assert not (tmp_path / "outputs").exists()
