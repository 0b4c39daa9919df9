"""The project builds as users install it: `pip install .` builds a wheel of this tree in an isolated environment."""

import subprocess
import sys
import zipfile

import pytest

from conftest import REPO


@pytest.mark.slow
def test_the_wheel_builds_without_deprecated_metadata_and_names_its_licence(tmp_path):
    # setuptools warns of deprecated metadata first and refuses it later (the licence as a table: from 2027-02-18)
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-cache-dir", "-w", str(tmp_path),
                            str(REPO)], capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stderr[-3000:]
    assert "deprecat" not in (built.stdout + built.stderr).lower(), (built.stdout + built.stderr)[-3000:]
    (wheel,) = tmp_path.glob("maze_jax-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        metadata = archive.read(next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))).decode()
        assert "License-Expression: Apache-2.0" in metadata
        assert any(n.startswith("maze_jax/conf/") and n.endswith(".yaml") for n in archive.namelist())
