"""Compiling a run's programs: the epoch and evaluation on a background thread while init compiles and the run sets
up."""

import subprocess
import sys
import threading

import jax
import numpy as np
import pytest

from conftest import REPO, make_trainer
from maze_jax.shell import programs as programs_module
from maze_jax.shell.programs import RUNS_ONCE, RUNS_PER_EPOCH, Compilation, compile_programs

sys.path.insert(0, str(REPO / "scripts"))
import bench  # noqa: E402


def test_the_run_sets_up_while_the_epoch_and_evaluation_compile(monkeypatch):
    """`Compilation` returns with init compiled and the other two still compiling; `programs()` waits for them. On
    one device the epoch is already compiling while init compiles (init's own compile overlaps it)."""
    _, trainer = make_trainer(["env=cartpole", "algorithm=es", "algorithm.n_rollouts_per_update=8",
                               "model.hidden_units=[8]", "runner.n_eval_rollouts=4"])
    release, compiled, epoch_compiling, overlapped = threading.Event(), [], threading.Event(), []
    timed = programs_module.Compilation.timed

    def held(self, name, lowered, options, lowering_s):  # compiles only once the test lets it
        epoch_compiling.set()
        assert release.wait(60)
        compiled.append((name, options))
        return timed(self, name, lowered, options, lowering_s)

    monkeypatch.setattr(programs_module.Compilation, "timed", held)
    compile_seconds = programs_module.compile_seconds
    monkeypatch.setattr(programs_module, "compile_seconds", lambda fn, args, options=None: (
        overlapped.append(epoch_compiling.wait(10)), compiled.append(("init", options)),
        compile_seconds(fn, args, options))[2])
    lines = []
    compilation = Compilation(trainer, jax.random.key(0), echo=lambda line, **kwargs: lines.append(line))
    state = compilation.init(jax.random.key(0), jax.random.key(1))  # the first state, before the others compile
    assert not compilation.jobs["epoch"].done() and not compilation.jobs["evaluation"].done()
    assert lines == ["Compiling init, training epoch and evaluation ..."]
    assert overlapped == [True]
    release.set()
    programs = compilation.programs()
    # in the order the run needs them; init, which runs once, compiled for a quick compile
    assert compiled == [("init", RUNS_ONCE), ("epoch", None), ("evaluation", RUNS_PER_EPOCH)]
    assert lines[-1].startswith("Compiled in ") and "init" in lines[-1] and lines[-1].endswith(")")  # all compiled
    assert compilation.programs() is not None and len(lines) == 2  # the compile line is logged once
    parts = bench.compile_parts(lines[-1])  # what `scripts/bench.py --only compile` reads from the run log
    assert set(parts) == {"all", "init", "epoch", "evaluation"} and min(parts.values()) > 0

    # the same programs as compiled one after another
    state, metrics = programs.train_epoch(state)
    reference = compile_programs(trainer, jax.random.key(0), echo=lambda *a, **k: None)
    again, again_metrics = reference.train_epoch(reference.init(jax.random.key(0), jax.random.key(1)))
    np.testing.assert_allclose(metrics["train_BaseEnvEvents/reward/mean"],
                               again_metrics["train_BaseEnvEvents/reward/mean"])
    episodes = programs.evaluate(state, jax.random.key(2))
    reference_episodes = reference.evaluate(again, jax.random.key(2))
    np.testing.assert_allclose(episodes.first_return, reference_episodes.first_return)


def test_a_compile_failure_surfaces_when_the_programs_are_needed(monkeypatch):
    """A failure on the background thread is raised where the run asks for the programs, not lost; a tracing
    error (the caller's thread) is raised at once."""
    import pytest

    _, trainer = make_trainer(["env=cartpole", "algorithm=es", "algorithm.n_rollouts_per_update=8",
                               "model.hidden_units=[8]"])

    def broken_epoch(state):
        raise ValueError("no epoch today")

    with pytest.raises(ValueError, match="no epoch today"):
        Compilation(trainer._replace(train_epoch=broken_epoch), jax.random.key(0), echo=lambda *a, **k: None)

    def out_of_memory(self, name, lowered, options, lowering_s):
        raise RuntimeError(f"RESOURCE_EXHAUSTED while compiling {name}")

    monkeypatch.setattr(programs_module.Compilation, "timed", out_of_memory)
    compilation = Compilation(trainer, jax.random.key(0), echo=lambda *a, **k: None)
    with pytest.raises(RuntimeError, match="RESOURCE_EXHAUSTED while compiling epoch"):
        compilation.programs()


@pytest.mark.cli  # builds and compiles a gymnasium env's PPO: 7 s
def test_with_a_python_env_the_compile_line_says_the_first_epoch_compiles_the_rest():
    _, trainer = make_trainer(["env=gymnasium", "env.name=CartPole-v1", "algorithm=ppo", "model.hidden_units=[8]"])
    lines = []
    programs = Compilation(trainer, jax.random.key(0), echo=lambda line, **kwargs: lines.append(line)).programs()
    assert programs.on_host and lines[-1].startswith("Compiled in ")
    assert lines[-1].endswith("; with a Python env the policy and the learner compile in the first epoch, which takes "
                              "longer than the next")
    trainer.close()


def test_the_compilation_cache_keeps_small_programs_too(tmp_path):
    """The shell's eager operations (keys, a first reset) compile in milliseconds each; the persistent cache keeps
    them as well, so a repeated run loads them instead of compiling them again."""
    script = (f"import jax, sys; from maze_jax.shell.programs import enable_compilation_cache; "
              f"enable_compilation_cache({str(tmp_path)!r}); "
              f"jax.jit(lambda x: x * 3 + 1)(jax.numpy.arange(5.0)).block_until_ready()")
    subprocess.run([sys.executable, "-c", script], check=True, cwd=REPO, capture_output=True)
    assert [name for name in (p.name for p in tmp_path.iterdir()) if name.startswith("jit__lambda")]
