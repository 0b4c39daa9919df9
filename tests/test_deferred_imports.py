"""gymnax's plotting imports are deferred: a training process does not load seaborn, scipy or pandas, and
code that does use the libraries still gets them."""

import os
import subprocess
import sys

from conftest import REPO

CODE = """
import sys
from maze_jax.envs import make_gymnax
make_gymnax("Pong-misc")  # its module imports matplotlib.pyplot and seaborn
heavy = sorted({m.split(".")[0] for m in sys.modules} & {"scipy", "pandas"})
print("heavy:", heavy, type(sys.modules["seaborn"]).__name__)
import seaborn as sns
from gymnax.environments.misc import pong
print("palette:", len(sns.color_palette("cubehelix", 3)), pong.plt.figure.__name__)
print("now:", type(sys.modules["seaborn"]).__name__, sorted({m.split(".")[0] for m in sys.modules} & {"scipy", "pandas"}))
"""


def test_plotting_libraries_load_only_when_used():
    proc = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, cwd=REPO, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr
    assert "heavy: [] DeferredModule" in proc.stdout
    assert "palette: 3 figure" in proc.stdout
    assert "now: module ['pandas', 'scipy']" in proc.stdout
