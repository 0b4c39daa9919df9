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
