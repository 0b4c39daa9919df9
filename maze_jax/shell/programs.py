"""A run's compiled programs (init, training epoch, evaluation), compiled ahead of time so that the log can say how
long users waited, and compiled on a background thread so that the wait overlaps the run's setup.

XLA compiles without holding Python's lock, so while the epoch and evaluation compile, the main thread lowers the
next program, builds (or restores) the first state and imports Orbax and TensorBoard's writer. On a 2-core CPU this
took 0.5 to 0.8 s off the first run of ES on CartPole (whole process, against compiling one program after another).
"""

from __future__ import annotations

import os
import time
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Callable, NamedTuple

import jax

from maze_jax.collectors import Trainer
from maze_jax.shell.memory import check_fits


class Programs(NamedTuple):
    """A run's programs: init(agent_key, env_key), train_epoch(state), evaluate(state, key) -> EpisodeStats;
    compiled ahead of time for JAX envs, host functions for Python envs (`on_host`: train_epoch(state,
    should_stop) and evaluate(state, key, should_stop) return when done, or None when stopped)."""

    init: Callable
    train_epoch: Callable
    evaluate: Callable
    on_host: bool = False
    epoch_env_steps: Callable[[], int] = lambda: 0  # a host epoch's env steps so far (`Trainer.epoch_env_steps`)


# XLA options for a program that runs once (init): its speed does not matter, its compile time does. On a 2-core CPU,
# LLVM's level 0 halves init's compile (PPO on CartPole: 1.29 -> 0.74 s; ES: 0.65 -> 0.36 s), and XLA's older
# elemental emitters instead of its fusion emitters halve it again (PPO on CartPole 0.89 -> 0.37 s, ES 0.43 -> 0.16,
# SAC on Pendulum with its warm-up 1.98 -> 0.94 and it runs in 76 ms instead of 96). The state is the same up to
# float rounding: level 0 forms no fused multiply-adds, so on a CPU with FMA some of its floats differ in the last
# bits from XLA's default level (on a 2-core AMD EPYC: 3,598 elements for ES on CartPole, 7,082 for PPO, 74,710 for
# SAC on Pendulum; an earlier machine showed none). Every run compiles init so, so a seed repeats exactly. A
# program that runs every epoch keeps the fusion emitters: its tanh and dense layers run at half speed without them.
RUNS_ONCE = {"xla_backend_optimization_level": 0, "xla_cpu_use_fusion_emitters": False}
# ... and for evaluation, which runs once an epoch: LLVM's level 1 compiles it in about two thirds of the time
# (ES on CartPole: 1.5 -> 1.0 s) and it runs as fast (9 ms for 32 episodes).
RUNS_PER_EPOCH = {"xla_backend_optimization_level": 1}


def enable_compilation_cache(path) -> None:
    """JAX's persistent compilation cache in `path` (None or "" = off): repeated runs skip most compilation.

    Every program is cached, however fast it compiled: the shell's small eager operations (keys, a first reset)
    compile in 10 to 80 ms each and load from the cache in a few. On a 2-core CPU that took 0.14 s (median of 6
    turns, 0 to 0.34 s) off a warm run of PPO on CartPole, whole process, against caching programs of 0.2 s or more."""
    if path:
        jax.config.update("jax_compilation_cache_dir", os.path.expanduser(str(path)))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)


def compile_seconds(fn: Callable, args: tuple, options: dict | None = None):
    """`fn` jitted, lowered for `args` and compiled with XLA `options`: (the compiled program, seconds it took)."""
    start = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile(compiler_options=options)
    return compiled, time.perf_counter() - start


class Compilation:
    """The programs of `trainer` while they compile: the epoch and the evaluation on a background thread (lowered
    here, since tracing needs Python's lock; compiled there), and init in this thread. `init` is usable once the
    constructor returns; a program that needs more memory than is free raises `shell.memory.OutOfMemory` (from
    `programs()` for the epoch and the evaluation).

    On one device the epoch and the evaluation are lowered first, so that init compiles while the epoch does: on a
    2-core CPU the first run of PPO on CartPole took 5.80 s instead of 6.14 (whole process, median of 3 turns
    against compiling init first). With several devices they are lowered for the shardings init's program gives
    its state (replicated over a mesh), so init compiles first.

    `programs()` waits for the rest and logs how long compiling took, in all and per program ("Compiled in X s
    (init .., epoch .., evaluation ..)"; a program read from the persistent cache takes a fraction)."""

    def __init__(self, trainer: Trainer, key: jax.Array, echo: Callable = print):
        echo("Compiling init, training epoch and evaluation ...", flush=True)
        self.echo, self.start, self.on_host = echo, time.perf_counter(), trainer.on_host
        self.epoch_env_steps, self.finished = trainer.epoch_env_steps, self.start  # finished: when the last one was
        self.times, self.jobs = {"init": 0.0}, {}
        if self.on_host:  # their jitted parts compile on first use
            self.jobs = {"epoch": done(trainer.train_epoch), "evaluation": done(trainer.evaluate)}
        elif jax.device_count() == 1:  # init's state needs no sharding of its own
            self.submit(trainer, key, jax.eval_shape(trainer.init, key, key))
        self.init, self.times["init"] = compile_seconds(trainer.init, (key, key), RUNS_ONCE)
        check_fits(self.init, "init program")
        self.finished = max(self.finished, time.perf_counter())
        if not self.jobs:  # the state as init places it (replicated over a mesh): the epoch expects it that way
            self.submit(trainer, key, jax.tree.map(
                lambda s, sharding: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding),
                jax.eval_shape(trainer.init, key, key), self.init.output_shardings))

    def submit(self, trainer: Trainer, key: jax.Array, state) -> None:
        """Lowers the epoch and the evaluation for `state` (abstract) and compiles them on a background thread."""
        pool = ThreadPoolExecutor(1, thread_name_prefix="compile")  # one at a time: XLA itself uses the cores
        for name, fn, args, options in (("epoch", trainer.train_epoch, (state,), None),
                                        ("evaluation", trainer.evaluate, (state, key), RUNS_PER_EPOCH)):
            lowered_at = time.perf_counter()
            lowered = jax.jit(fn).lower(*args)
            self.jobs[name] = pool.submit(self.timed, name, lowered, options, time.perf_counter() - lowered_at)
        pool.shutdown(wait=False)  # the thread ends when both are compiled

    def timed(self, name: str, lowered, options: dict | None, lowering_s: float):
        start = time.perf_counter()
        compiled = lowered.compile(compiler_options=options)
        self.finished = max(self.finished, time.perf_counter())
        self.times[name] = lowering_s + time.perf_counter() - start
        check_fits(compiled, "training epoch" if name == "epoch" else name)
        return compiled

    def programs(self, should_stop: Callable[[], bool] = lambda: False) -> Programs | None:
        """The compiled programs, once all are ready (logs the compile times the first time); None as soon as
        `should_stop()` is true (polled every 50 ms: a signal need not wait for a compile of minutes, which runs on
        and is not waited for when the command exits)."""
        for job in self.jobs.values():
            while not job.done():
                if should_stop():
                    return None
                wait([job], timeout=0.05)
        epoch, evaluate = self.jobs["epoch"].result(), self.jobs["evaluation"].result()
        if self.start is not None:
            parts = ", ".join(f"{name} {seconds:.2f}" for name, seconds in self.times.items())
            later = "; with a Python env the policy and the learner compile in the first epoch, which takes longer " \
                    "than the next" if self.on_host else ""
            self.echo(f"Compiled in {self.finished - self.start:.2f} s ({parts}){later}", flush=True)
            self.start = None
        return Programs(self.init, epoch, evaluate, self.on_host, self.epoch_env_steps)


def done(value) -> Future:
    """A future that holds `value` already."""
    future = Future()
    future.set_result(value)
    return future


def compile_programs(trainer: Trainer, key: jax.Array, echo: Callable = print) -> Programs:
    """Compiles init, epoch and evaluation ahead of time and waits for them (see `Compilation`)."""
    return Compilation(trainer, key, echo).programs()
