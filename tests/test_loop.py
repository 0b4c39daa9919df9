"""The host loop: model selection, the best-model line, early stopping after `patience`, threshold stop."""

import io

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from maze_jax.envs import EpisodeStats
from maze_jax.shell.checkpoints import CheckpointDir
from maze_jax.shell.listeners import Checkpoints
from maze_jax.collectors import TrainState
from maze_jax.shell.loop import LoopOptions, LoopState, Progress, TrainingLoop, select_seeds, wait_until_ready
from maze_jax.shell.programs import Programs


def fake_programs(scores):
    """Epoch i's evaluation returns scores[i] for every episode; the state is the epoch counter."""

    def train_epoch(state):
        return state + 1, {"train_BaseEnvEvents/reward/episode_count": jnp.int32(1),
                           "train_BaseEnvEvents/reward/step_count": jnp.int32(10)}

    def evaluate(state, key):
        score = jnp.asarray(scores)[state - 1]
        return EpisodeStats.zeros(2, 5).add(jnp.array([True, True]), jnp.full(2, score), jnp.array([5, 5]))

    return Programs(init=lambda *keys: jnp.int32(0), train_epoch=jax.jit(train_epoch), evaluate=jax.jit(evaluate))


def run(tmp_path, scores, **options):
    lines = []
    echo = lambda *a, **k: lines.append(" ".join(map(str, a)))  # noqa: E731
    checkpoints = Checkpoints(CheckpointDir(str(tmp_path / "latest")), CheckpointDir(str(tmp_path / "best")), echo=echo)
    loop = TrainingLoop(fake_programs(scores), LoopOptions(**options), eval_key=jnp.zeros(2, jnp.uint32),
                        listeners=[checkpoints], echo=echo)
    result = loop.run(LoopState(jnp.int32(0), Progress()))
    assert result.stop_reason == ""
    return result.state, result.progress, result.best_state, "\n".join(lines)


def test_early_stopping_once_more_than_patience_epochs_passed_without_improvement(tmp_path):
    # best at epoch 2; epochs 3 to 5 are `patience` epochs without improvement, and Maze still trains epoch 6
    # (it stops when the epochs since the last improvement exceed patience)
    state, progress, best, out = run(tmp_path, [1.0, 3.0, 2.0, 3.0, 2.5, 2.0, 9.0, 9.0], n_epochs=8, patience=3)
    assert "-> no improvement since 3 epochs: EARLY STOPPING!" in out
    assert progress.epoch == 6 and progress.best_epoch == 2 and progress.best_score == 3.0
    assert int(best) == 2
    assert out.count("-> new overall best model") == 2 and "-> new overall best model 3.00000!" in out
    assert CheckpointDir(str(tmp_path / "best"), read_only=True).latest_step() == 2
    assert CheckpointDir(str(tmp_path / "latest"), read_only=True).latest_step() == 6
    _, progress, _, out = run(tmp_path / "late", [1.0, 3.0, 2.0, 3.0, 2.5, 9.0, 9.0], n_epochs=7, patience=3)
    assert progress.epoch == 7 and progress.best_epoch == 6 and "EARLY STOPPING" not in out


def test_stops_at_the_reward_threshold_and_at_n_epochs(tmp_path):
    _, progress, _, out = run(tmp_path / "a", [1.0, 5.0, 9.0], n_epochs=3, reward_threshold=4.0)
    assert progress.epoch == 2 and "reached the reward threshold 4" in out
    _, progress, _, out = run(tmp_path / "b", [1.0, 2.0, 3.0, 4.0], n_epochs=3)
    assert progress.epoch == 3 and "EARLY STOPPING" not in out


def test_a_host_epoch_reports_progress_while_it_waits_for_its_envs(tmp_path):
    import time

    def slow_host_epoch(state, should_stop):  # a host trainer polls should_stop while its Python envs step
        for _ in range(30):
            time.sleep(0.01)
            if should_stop():
                return None
        return state + 1, {"train_BaseEnvEvents/reward/episode_count": jnp.int32(1),
                           "train_BaseEnvEvents/reward/step_count": jnp.int32(10)}

    jax_programs = fake_programs([1.0])
    lines = []
    programs = Programs(jax_programs.init, slow_host_epoch, lambda state, key, should_stop: jax_programs.evaluate(
        state, key), on_host=True, epoch_env_steps=lambda: 12288)
    start = time.perf_counter()
    TrainingLoop(programs, LoopOptions(n_epochs=1, progress_interval_s=0.1), eval_key=jnp.zeros(2, jnp.uint32),
                 echo=lambda *a, **k: lines.append(" ".join(map(str, a)))).run(LoopState(jnp.int32(0), Progress()))
    reports = sum(line.startswith("... epoch 0 running for") for line in lines)
    assert 2 <= reports <= (time.perf_counter() - start) / 0.1 + 1, lines  # one every 0.1 s, not one a poll
    assert all(line.endswith(" s, 12,288 env steps so far") for line in lines if line.startswith("... epoch")), lines


def test_progress_during_a_host_epochs_evaluation_says_it_is_evaluating():
    import time

    from maze_jax.shell.progress import ProgressLine

    jax_programs = fake_programs([1.0])

    def poll_for(seconds, should_stop):
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            time.sleep(0.01)
            should_stop()

    def slow_host_epoch(state, should_stop):
        return poll_for(0.35, should_stop) or jax_programs.train_epoch(state)

    def slow_host_evaluation(state, key, should_stop):  # a slow env's episodes: the env steps stop counting
        return poll_for(0.35, should_stop) or jax_programs.evaluate(state, key)

    programs = Programs(jax_programs.init, slow_host_epoch, slow_host_evaluation, on_host=True,
                        epoch_env_steps=lambda: 12288)
    for progress_line in (None, ProgressLine(1, 0, io.StringIO(), interactive=False)):
        lines = []
        TrainingLoop(programs, LoopOptions(n_epochs=1, progress_interval_s=0.1), eval_key=jnp.zeros(2, jnp.uint32),
                     echo=lambda *a, **k: lines.append(" ".join(map(str, a))), progress_line=progress_line
                     ).run(LoopState(jnp.int32(0), Progress()))
        reports = [line for line in lines if line.startswith("... ")]
        training = [line for line in reports if line.endswith("12,288 env steps so far")]
        evaluating = [line for line in reports if line.endswith("12,288 env steps so far, evaluating")]
        assert training and evaluating and len(training) + len(evaluating) == len(reports), lines
        assert reports.index(evaluating[0]) > reports.index(training[-1]), lines


def test_a_signal_during_a_host_evaluation_stops_it_and_abandons_the_epoch(tmp_path):
    from maze_jax.shell.signals import StopSignals

    signals, polls = StopSignals(lambda *a, **k: None), []
    jax_programs = fake_programs([1.0, 2.0])

    def host_epoch(state, should_stop):
        return jax_programs.train_epoch(state)

    def slow_host_evaluation(state, key, should_stop):  # a slow env: a signal arrives in its second epoch's episodes
        for step in range(1000):
            if int(state) == 2 and step == 3:
                signals.received = "SIGINT"
            polls.append(step)
            if should_stop():
                return None
        return jax_programs.evaluate(state, key)

    lines = []
    programs = Programs(jax_programs.init, host_epoch, slow_host_evaluation, on_host=True)
    checkpoints = Checkpoints(CheckpointDir(str(tmp_path / "latest")), CheckpointDir(str(tmp_path / "best")),
                              echo=lambda *a, **k: None)
    loop = TrainingLoop(programs, LoopOptions(n_epochs=5), eval_key=jnp.zeros(2, jnp.uint32), listeners=[checkpoints],
                        echo=lambda *a, **k: lines.append(" ".join(map(str, a))), signals=signals)
    result = loop.run(LoopState(jnp.int32(0), Progress()))
    assert result.stop_reason == "SIGINT" and len(polls) == 1000 + 4  # epoch 1's evaluation in full, epoch 2's to 4
    assert int(result.state) == 1 and result.progress.epoch == 1  # the trained but unevaluated epoch 2 is dropped
    assert CheckpointDir(str(tmp_path / "latest"), read_only=True).latest_step() == 1


def test_episode_progress_says_how_many_episodes_have_ended_every_interval():
    import time

    from maze_jax.shell.loop import EpisodeProgress, play_in_batches

    def slow_batch(state, key, should_stop):  # a Python env's batch of 2 episodes: it polls between its steps
        for _ in range(20):
            time.sleep(0.01)
            if should_stop():
                return None
        return EpisodeStats.zeros(2, 5).add(jnp.array([True, True]), jnp.ones(2), jnp.array([5, 5]))

    lines, stop = [], []
    progress = EpisodeProgress("final evaluation", 6, 0.1, lambda line, **_: lines.append(line), lambda: bool(stop))
    start = time.perf_counter()
    returns, _ = play_in_batches(lambda s, k: slow_batch(s, k, progress.poll), None, jax.random.key(0), 6,
                                 progress.poll, progress.on_batch)
    assert returns.shape == (6,)
    counts = [line.split(": ")[1].split(" ")[0] for line in lines]
    assert {"0/6", "2/6", "4/6"} >= set(counts) and "4/6" in counts, lines
    assert 3 <= len(lines) <= (time.perf_counter() - start) / 0.1 + 1, lines  # one every 0.1 s, not one a poll
    assert all(line.startswith("... final evaluation: ") and " episodes | running for " in line for line in lines)
    stop.append(True)  # a signal: the poll says so
    assert play_in_batches(lambda s, k: slow_batch(s, k, progress.poll), None, jax.random.key(0), 6,
                           progress.poll) is None


def test_a_failed_save_is_one_error_line_and_a_second_try_at_the_end_is_reported_apart(tmp_path):
    import errno

    class FullOnce(CheckpointDir):  # the first save meets a full disk, later ones find room
        failed = False

        def save(self, *args, **kwargs):
            if not FullOnce.failed:
                FullOnce.failed = True
                raise OSError(errno.ENOSPC, "No space left on device", self.path)
            return super().save(*args, **kwargs)

    out, err = [], []
    echo = lambda *a, file=None, **k: (err if file is not None else out).append(" ".join(map(str, a)))  # noqa: E731
    checkpoints = Checkpoints(FullOnce(str(tmp_path / "latest")), FullOnce(str(tmp_path / "best")), every_s=0.0,
                              echo=echo)
    loop = TrainingLoop(fake_programs([1.0, 2.0]), LoopOptions(n_epochs=2), eval_key=jnp.zeros(2, jnp.uint32),
                        listeners=[checkpoints], echo=echo)
    result = loop.run(LoopState(jnp.int32(0), Progress()))
    assert result.stop_reason == "write-failed"
    assert len(err) == 1 and err[0].startswith("Error: could not write") and "No space left" in err[0], err
    assert any(line.startswith("Saved epoch 1 to") and line.endswith("on a second try") for line in out), out
    assert CheckpointDir(str(tmp_path / "latest"), read_only=True).latest_step() == 1


@pytest.mark.parametrize("n_seeds", [2, 3])
def test_each_seed_keeps_its_best_state_and_a_host_trainers_shared_env_key_comes_from_the_newest(n_seeds):
    # a host trainer's state: learners with a seed axis, one env key for all seeds' envs (a key's data is 2 words,
    # which with 2 seeds must not be taken for a seed axis)
    def state(version):
        learner = {"w": jnp.full((n_seeds, 3), float(version)), "key": jax.random.split(jax.random.key(version),
                                                                                         n_seeds)}
        return TrainState(learner, jax.random.key(100 + version))

    improved = np.arange(n_seeds) % 2 == 0
    best = select_seeds(improved, state(1), state(0))
    np.testing.assert_array_equal(best.learner["w"][:, 0], np.where(improved, 1.0, 0.0))
    picked = np.where(improved[:, None], jax.random.key_data(state(1).learner["key"]),
                      jax.random.key_data(state(0).learner["key"]))
    np.testing.assert_array_equal(jax.random.key_data(best.learner["key"]), picked)
    np.testing.assert_array_equal(jax.random.key_data(best.envs), jax.random.key_data(jax.random.key(101)))


def test_waiting_for_a_call_that_blocks_stays_responsive_and_passes_on_its_result_and_its_error():
    """A compiled program's call blocks until the program is done where JAX runs CPU programs inline: the wait
    polls should_stop meanwhile, gives None at once when it turns true, and otherwise the call's result or error."""
    import threading
    import time

    release = threading.Event()
    polls = []
    start = time.perf_counter()
    assert wait_until_ready(lambda: release.wait(30) and jnp.ones(2), lambda: polls.append(1) or len(polls) > 3) is None
    assert time.perf_counter() - start < 5 and len(polls) == 4  # polled every 10 ms while the call blocked
    release.set()
    np.testing.assert_array_equal(wait_until_ready(lambda: jnp.arange(3), lambda: False), [0, 1, 2])

    def fails():
        raise ValueError("the program failed")

    with pytest.raises(ValueError, match="the program failed"):
        wait_until_ready(fails, lambda: False)

