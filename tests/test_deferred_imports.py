"""gymnax's plotting imports are deferred: a training process does not load matplotlib, seaborn, scipy or pandas
while it starts, and code that does use the libraries still gets them."""

import os
import subprocess
import sys

from conftest import REPO

CODE = """
import sys
from maze_jax.envs import make_gymnax
make_gymnax("Pong-misc")  # its module imports matplotlib.pyplot and seaborn
heavy = sorted({m.split(".")[0] for m in sys.modules} & {"scipy", "pandas", "pyparsing"})
print("heavy:", heavy, *(type(sys.modules[m]).__name__ for m in ("seaborn", "matplotlib", "matplotlib.colors")))
import importlib.util
print("found:", importlib.util.find_spec("matplotlib").name)
import matplotlib.cbook as cbook  # a submodule first: it must see the real library, not the stand-in
print("submodule:", type(cbook.matplotlib).__name__, cbook.matplotlib is sys.modules["matplotlib"])
from matplotlib.figure import Figure  # what the run's pictures import, on their thread
import matplotlib
print("figure:", type(sys.modules["matplotlib"]).__name__, matplotlib.figure.Figure is Figure)
import seaborn as sns
from gymnax.environments.misc import pong
print("palette:", len(sns.color_palette("cubehelix", 3)), pong.plt.figure.__name__, pong.colors.to_hex("red"))
print("now:", type(sys.modules["seaborn"]).__name__, sorted({m.split(".")[0] for m in sys.modules} & {"scipy", "pandas"}))
"""


def test_plotting_libraries_load_only_when_used():
    proc = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, cwd=REPO, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr
    assert "heavy: [] DeferredModule DeferredModule DeferredModule" in proc.stdout
    assert "found: matplotlib" in proc.stdout
    assert "submodule: module True" in proc.stdout
    assert "figure: module True" in proc.stdout
    assert "palette: 3 figure #ff0000" in proc.stdout
    assert "now: module ['pandas', 'scipy']" in proc.stdout
