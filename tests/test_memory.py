"""Programs that need more memory than the machine has are refused before they run, and an allocation that fails
while one runs stops the run in one line (exit status 6), keeping the last good state."""

import jax
import jax.numpy as jnp
import pytest

from maze_jax.shell import memory
from maze_jax.shell.checkpoints import CheckpointDir
from maze_jax.shell.listeners import Checkpoints
from maze_jax.shell.loop import LoopOptions, LoopState, Progress, TrainingLoop
from maze_jax.shell.programs import Programs
from test_loop import fake_programs

OOM = "RESOURCE_EXHAUSTED: Out of memory allocating 69243569488 bytes."


def compiled_product():
    """A program whose output alone is 4 MB: (1000, 1000) float32."""
    return jax.jit(lambda x: x @ x.T).lower(jnp.ones((1000, 10))).compile()


def test_a_program_that_needs_more_than_is_free_is_refused_naming_it_and_the_sizes(monkeypatch):
    compiled = compiled_product()
    assert memory.needed_bytes(compiled, memory.program_devices(compiled)) >= 4_000_000
    monkeypatch.setattr(memory, "free_bytes", lambda device: 10 * memory.GiB)
    memory.check_fits(compiled, "training epoch")  # fits
    monkeypatch.setattr(memory, "free_bytes", lambda device: 1_000_000)
    with pytest.raises(memory.OutOfMemory, match=r"the training epoch needs 0\.0 GiB of memory and 0\.0 GiB are "
                                                 r"free \(cpu\): a smaller population"):
        memory.check_fits(compiled, "training epoch")
    monkeypatch.setattr(memory, "free_bytes", lambda device: None)  # a platform that does not say
    memory.check_fits(compiled, "training epoch")


def test_the_hosts_free_memory_is_read_for_the_cpu():
    free = memory.free_bytes(jax.devices("cpu")[0])
    assert free is not None and 0 < free


def test_an_allocation_that_failed_is_one_line_with_advice():
    error = jax.errors.JaxRuntimeError(OOM)
    assert memory.is_out_of_memory(error) and not memory.is_out_of_memory(jax.errors.JaxRuntimeError("INTERNAL: x"))
    assert not memory.is_out_of_memory(ValueError(OOM))
    assert memory.out_of_memory_line(error) == ("out of memory (Out of memory allocating 69243569488 bytes): "
                                                + memory.ADVICE)


def test_an_epoch_that_runs_out_of_memory_stops_the_run_and_keeps_the_last_good_state(tmp_path):
    programs = fake_programs([1.0, 2.0, 3.0])

    def epoch(state):
        if int(state) == 2:
            raise jax.errors.JaxRuntimeError(OOM)
        return programs.train_epoch(state)

    lines = []
    checkpoints = Checkpoints(CheckpointDir(str(tmp_path / "latest")), CheckpointDir(str(tmp_path / "best")),
                              echo=lambda *a, **k: None)
    loop = TrainingLoop(Programs(programs.init, epoch, programs.evaluate), LoopOptions(n_epochs=3),
                        eval_key=jnp.zeros(2, jnp.uint32), listeners=[checkpoints],
                        echo=lambda *a, **k: lines.append(" ".join(map(str, a))))
    result = loop.run(LoopState(jnp.int32(0), Progress()))
    assert result.stop_reason == "out-of-memory" and int(result.state) == 2 and result.progress.epoch == 2
    assert [line for line in lines if line.startswith("Error:")] == [
        f"Error: out of memory (Out of memory allocating 69243569488 bytes): {memory.ADVICE}. The last good state "
        "(epoch 2) is kept"]
    assert CheckpointDir(str(tmp_path / "latest"), read_only=True).latest_step() == 2


def test_other_errors_of_an_epoch_are_not_taken_for_memory(tmp_path):
    programs = fake_programs([1.0])

    def epoch(state):
        raise jax.errors.JaxRuntimeError("INTERNAL: something else")

    loop = TrainingLoop(Programs(programs.init, epoch, programs.evaluate), LoopOptions(n_epochs=1),
                        eval_key=jnp.zeros(2, jnp.uint32), echo=lambda *a, **k: None)
    with pytest.raises(jax.errors.JaxRuntimeError, match="INTERNAL"):
        loop.run(LoopState(jnp.int32(0), Progress()))
