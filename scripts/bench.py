"""Speed measurements a user can re-run: `python scripts/bench.py [--quick] [--only NAME ...]`.

compile    Each program's compile time (init, epoch, evaluation) of ES, PPO and A2C on CartPole and PPO on the cutting
           env, as the run log prints it: empty compilation cache, then warm. With `--against COMMIT [--rounds N]`:
           cold compile times of this checkout and of COMMIT, run by turns, and the ratio of their medians.
solve      Time to solve CartPole-v1 with the default command (`env=cartpole algorithm=es|ppo|a2c`), whole process
           from start to exit: first run with an empty compilation cache, then a repeat with the cache it filled;
           before them, the seconds a fresh process takes to import jax (and ml_dtypes within it) and maze_jax.
es         ES epoch throughput (env steps/s, compile time apart) for several populations, 32x32 network.
es-sampling  ES acting on the policy's mode against sampling from it, CartPole-v1 and Acrobot-v1 (not in the default run).
ppo        PPO training throughput: 64x64 network, 16 envs x 128 steps, 4 epochs of 4 minibatches; and a PureJaxRL-style
           loop (one jitted function, separate actor and critic) at the same settings, counted the same way; and
           the recurrent model (model=vector_obs_rnn) at the same settings, replaying sequences of 16 steps and
           whole rollouts, against the feed-forward rate.
pendulum   PPO on Pendulum-v1 (continuous actions): env steps and seconds to an evaluation mean >= -200.
cutting    PPO on the masked structured cutting env (the README's command, default settings): epochs, sub-steps and
           seconds until the evaluation uses the fewest raw pieces possible; raw pieces per step of PPO, a random
           masked policy and the first-fit and best-fit heuristics on the same 64 episodes.
python     Python envs through the host collector: raw vector-env stepping against PPO's training throughput
           (CartPole-v1 and LunarLander-v3, gymnasium and envpool: from envpool's jitted rollouts, and for
           comparison stepped in Python), and LunarLander to an evaluation mean of 200.
ray        runner=ray (not in the default run; needs the ray extra): PPO steps/s on a deliberately slow env (CartPole
           sleeping 1 ms a step, scripts/slow_env.py) with 1, 2 and 4 workers of 8 envs against the single-process
           collector (sync and async) at the same env counts; the per-step overhead of a worker against the plain
           vector env on the fast CartPole; the learner's own rate (samples/s of PPO's update), which bounds a cluster.
grid       A 16-configuration PPO grid on CartPole-v1 (4 learning rates x 4 entropy coefficients, 3 epochs each) in one
           program (`+grid...`), against the same 16 configurations as a Hydra multirun; whole process, empty
           compilation caches (not in the default run).
pbt        PPO on Pendulum-v1: population-based training of 8 members against a grid of 8 configurations (4 learning
           rates x 2 clip ranges), each for the same epochs, so at equal total env steps: PBT's best member against
           the grid's median and best configuration, final evaluation of the best models (not in the default run).
scale      ES and PPO env steps/s against the batch (ES population, PPO envs: --sizes), on one device and on
           every device (on a CPU: 4 devices forced with --xla_force_host_platform_device_count=4).
Targets on a 2-core CPU: solve in < 10 s; ES >= 2,000,000 steps/s at population 128; PPO >= 120,000 steps/s.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
import tempfile
import time

import numpy as np

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, REPO)  # runs from a checkout without installing too

PENDULUM = ["env=gymnax", "env.name=Pendulum-v1", "algorithm=ppo", "runner.concurrency=64",
            "algorithm.n_rollout_steps=64", "algorithm.batch_size=1024", "algorithm.n_optimization_epochs=10",
            "algorithm.epoch_length=10", "algorithm.lr=0.002", "algorithm.gamma=0.9", "algorithm.gae_lambda=0.95",
            "algorithm.entropy_coef=0.0", "algorithm.max_grad_norm=0.5", "algorithm.rollout_evaluator.n_episodes=64"]


CUTTING = ["env=tutorial_cutting_2d_struct_masked", "wrappers=tutorial_cutting_2d",
           "model=tutorial_cutting_2d_struct_masked", "algorithm=ppo"]


def time_to_solve(algorithm: str, seed: int, cache_dir: str, log_dir: str) -> tuple[float, str]:
    cmd = [sys.executable, "-m", "maze_jax.train", "env=cartpole", f"algorithm={algorithm}",
           f"seeding.agent_base_seed={seed}", f"seeding.env_base_seed={seed}", f"compilation_cache_dir={cache_dir}",
           f"log_base_dir={log_dir}"]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(proc.stderr)
    solved = "reached the reward threshold" in proc.stdout
    epochs = len(re.findall(r"\*\*\*\*\*\*\*\*\*\* Iteration", proc.stdout))
    compiled = re.search(r"Compiled in ([\d.]+) s", proc.stdout).group(1)
    return seconds, f"{'solved' if solved else 'NOT solved'} in {epochs} epochs, compile {compiled} s"


def import_seconds(module: str, after: str = "", repeats: int = 3) -> float:
    """The median seconds a fresh process takes to import `module` (`python -X importtime`'s total for it), once
    `after` (a module it imports, left out of its time) is imported."""
    times = []
    for _ in range(repeats):
        code = f"import {after}; import {module}" if after else f"import {module}"
        proc = subprocess.run([sys.executable, "-X", "importtime", "-c", code], capture_output=True,
                              text=True, cwd=REPO)
        line = [t for t in proc.stderr.splitlines() if t.rstrip().endswith(f"| {module}")][-1]
        times.append(int(line.split("|")[1]) / 1e6)
    return float(np.median(times))


COMPILE_RUNS = (("ES CartPole-v1", ["env=cartpole", "algorithm=es"]),
                ("PPO CartPole-v1", ["env=cartpole", "algorithm=ppo"]),
                ("A2C CartPole-v1", ["env=cartpole", "algorithm=a2c"]),
                ("PPO cutting (structured, masked)", CUTTING))


def compile_line(overrides: list[str], cache_dir: str, log_dir: str, repo: str = REPO) -> str:
    """The run log's compile line ("Compiled in X s (init .., epoch .., evaluation ..)") of a one-epoch run of the
    checkout in `repo` (`python -m` puts its folder first on the path)."""
    cmd = [sys.executable, "-m", "maze_jax.train", *overrides, "algorithm.n_epochs=1", "runner.final_eval_rollouts=1",
           f"compilation_cache_dir={cache_dir}", f"log_base_dir={log_dir}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=repo)
    if proc.returncode != 0:
        raise SystemExit(proc.stderr)
    return re.search(r"Compiled in .*", proc.stdout).group(0)


def compile_times() -> None:
    """Each program's compile time as the run log prints it: cold (empty cache), then warm (the cache it filled)."""
    for name, overrides in COMPILE_RUNS:
        with tempfile.TemporaryDirectory() as tmp:
            cold = compile_line(overrides, os.path.join(tmp, "cache"), tmp)
            warm = compile_line(overrides, os.path.join(tmp, "cache"), tmp)
        print(f"{name}: cold {cold}; warm {warm}", flush=True)


def compile_parts(line: str) -> dict[str, float]:
    """{"all": X, "init": .., "epoch": .., "evaluation": ..} from a compile line."""
    parts = {"all": float(re.search(r"Compiled in ([\d.]+) s", line).group(1))}
    parts.update((name, float(seconds)) for name, seconds in re.findall(r"(\w+) ([\d.]+)(?=[,)])", line))
    return parts


def compile_against(rev: str, rounds: int) -> None:
    """Cold compile times of this checkout against commit `rev` (checked out in a temporary git worktree), the two
    run by turns, `rounds` times each: a shared machine's speed drifts by tens of percent within minutes, so only
    runs side by side compare. Prints the medians and their ratio per program."""
    import statistics

    with tempfile.TemporaryDirectory() as tmp:
        other = os.path.join(tmp, "against")
        added = subprocess.run(["git", "-C", REPO, "worktree", "add", "--detach", other, rev], capture_output=True,
                               text=True)
        if added.returncode != 0:
            raise SystemExit(f"Error: cannot check out {rev!r}: {added.stderr.strip()}")
        try:
            for n, (name, overrides) in enumerate(COMPILE_RUNS):
                runs = {"here": [], rev: []}
                for i in range(rounds):  # who goes first alternates, so a drift favours neither
                    for side, (label, repo) in enumerate((("here", REPO), (rev, other))[:: 1 if i % 2 == 0 else -1]):
                        cache = os.path.join(tmp, f"cache-{n}-{i}-{side}")
                        runs[label].append(compile_parts(compile_line(overrides, cache, tmp, repo)))
                medians = {label: {part: statistics.median(run[part] for run in done) for part in done[0]}
                           for label, done in runs.items()}
                here, there = medians["here"], medians[rev]
                print(f"{name}: median of {rounds}, here / {rev}: " + ", ".join(
                    f"{part} {here[part]:.2f} / {there[part]:.2f} s ({here[part] / there[part]:.2f}x)"
                    for part in here if part in there), flush=True)
        finally:
            subprocess.run(["git", "-C", REPO, "worktree", "remove", "--force", other], capture_output=True)


def compiled_trainer(algorithm: str, overrides: list[str], env_name: str = "CartPole-v1"):
    import jax

    from maze_jax.envs import make_gymnax
    from maze_jax.shell.session import build
    from maze_jax.shell.settings import compose_config, read_settings
    from maze_jax.shell.programs import compile_programs

    cfg, _ = compose_config([f"algorithm={algorithm}", *overrides])
    _, trainer = build(read_settings(cfg), env=make_gymnax(env_name), echo=lambda *a, **k: None)
    start = time.perf_counter()
    programs = compile_programs(trainer, jax.random.key(0), echo=lambda *a, **k: None)
    return programs, time.perf_counter() - start


def throughput(algorithm: str, overrides: list[str], repeats: int = 5) -> tuple[float, float]:
    """Env steps per second of the compiled epoch (first call excluded) and the compile time."""
    programs, compile_s = compiled_trainer(algorithm, overrides)
    seconds, metrics = epoch_seconds(programs, repeats)
    return float(metrics["train_BaseEnvEvents/reward/step_count"]) / seconds, compile_s


def epoch_seconds(programs, repeats: int = 5) -> tuple[float, dict]:
    """Seconds per call of a compiled epoch (the first call apart), and the last call's metrics."""
    import jax

    state = programs.init(jax.random.key(0), jax.random.key(1))
    state, metrics = programs.train_epoch(state)
    jax.block_until_ready(metrics)
    start = time.perf_counter()
    for _ in range(repeats):
        state, metrics = programs.train_epoch(state)
    jax.block_until_ready(metrics)
    return (time.perf_counter() - start) / repeats, metrics


def es_sampling(seeds: list[int], max_epochs: int = 60) -> None:
    """ES with members and evaluations on the policy's mode against sampling from it (Maze's way), on CartPole-v1
    and Acrobot-v1: epochs until the evaluation mean reaches the env's threshold, and the final 100 episodes."""
    import jax

    from maze_jax.shell.loop import evaluation_stats, play_in_batches

    for env_name, threshold in (("CartPole-v1", 475.0), ("Acrobot-v1", -100.0)):
        for deterministic in (True, False):
            rows = []
            for seed in seeds:
                programs, _ = compiled_trainer("es", [f"algorithm.deterministic={str(deterministic).lower()}",
                                                      "runner.n_eval_rollouts=32"], env_name)
                state = programs.init(jax.random.key(seed), jax.random.key(seed + 1000))
                solved = None
                for epoch in range(1, max_epochs + 1):
                    state, _ = programs.train_epoch(state)
                    score = evaluation_stats(programs.evaluate, state, jax.random.key(epoch))[
                        "eval_BaseEnvEvents/reward/mean"]
                    if score >= threshold:
                        solved = epoch
                        break
                returns, _ = play_in_batches(programs.evaluate, state, jax.random.key(999), 100)
                rows.append(f"seed {seed}: {'solved at epoch %d' % solved if solved else 'not solved'}, "
                            f"final {returns.mean():.1f}")
            mode = "mode" if deterministic else "sampled"
            print(f"{env_name} {mode:8s}: " + "; ".join(rows), flush=True)


def raw_vector_rate(env_id: str, backend: str, n_envs: int, steps: int = 1000,
                    repeats: int = 3) -> tuple[float, float]:
    """Env steps per second of the library's own vector env with random actions (no policy, no conversion), and
    the CPU seconds (all threads of this process) one env step takes: the fastest of `repeats` runs of `steps`
    vector steps, after 200 steps of warm-up (envpool's first steps run at a fraction of its rate)."""
    import numpy as np

    if backend == "envpool":
        import envpool

        env = envpool.make_gymnasium(env_id, num_envs=n_envs, seed=0)  # envpool seeds its envs when it builds them
        sample = lambda: np.array([env.action_space.sample() for _ in range(n_envs)])  # noqa: E731
        env.reset()
    else:
        import gymnasium

        env = gymnasium.make_vec(env_id, num_envs=n_envs, vectorization_mode="sync",
                                 vector_kwargs={"autoreset_mode": gymnasium.vector.AutoresetMode.SAME_STEP})
        sample = env.action_space.sample
        env.reset(seed=0)
    actions = [sample() for _ in range(64)]
    for i in range(200):
        env.step(actions[i % 64])
    runs = []
    for _ in range(repeats):
        start, cpu = time.perf_counter(), time.process_time()
        for i in range(steps):
            env.step(actions[i % 64])
        runs.append((steps * n_envs / (time.perf_counter() - start), (time.process_time() - cpu) / (steps * n_envs)))
    env.close()
    return max(runs)


def timed_calls(call, repeats: int) -> tuple[float, float]:
    """(wall, CPU) seconds of `repeats` calls of `call`, the last result waited for."""
    import jax

    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(repeats):
        result = call()
    jax.block_until_ready(result)
    return time.perf_counter() - start, time.process_time() - cpu


def python_costs(spec, trainer, raw_cpu: float, raw_rate: float) -> str:
    """Where a Python env's training time goes on this machine: the actor alone (the policy call, the vector env's
    step and the rollout's bookkeeping, no learner) against the raw rate, and the CPU seconds per env step of
    the raw envs, the actor and PPO's update; with them, the highest share of raw stepping the host's cores allow
    when the actor and the learner each run as fast as they do alone and share the cores perfectly."""
    import jax

    from maze_jax.shell.collectors import envpool_xla
    from maze_jax.shell.collectors.host import RolloutCollector

    n_envs, n_steps = trainer.algorithm.config.n_envs, trainer.algorithm.config.n_rollout_steps
    learner = jax.tree.map(lambda x: x[None], trainer.init(jax_key(0), jax_key(1)).learner)
    if envpool_xla.fits(trainer.algorithm, spec):  # as the trainer collects: envpool's jitted rollouts
        collector = envpool_xla.EnvpoolRollouts(trainer.algorithm, spec, n_envs, n_steps, 1, 0)
    else:
        collector = RolloutCollector(trainer.algorithm, spec, n_envs, n_steps, 1, 0, "sync")
    try:
        trajectory = collector.collect(learner.params, jax_key(2)[None])[0]  # compiles
        wall, actor_cpu = timed_calls(lambda: collector.collect(learner.params, jax_key(3)[None])[0], 4)
    finally:
        collector.close()
    update = jax.jit(jax.vmap(trainer.algorithm.update))
    jax.block_until_ready(update(learner, trajectory))
    _, learner_cpu = timed_calls(lambda: update(learner, trajectory), 4)
    samples = 4 * n_envs * n_steps
    actor_rate, actor_cpu, learner_cpu = samples / wall, actor_cpu / samples, learner_cpu / samples
    cores = len(os.sched_getaffinity(0))
    ceiling = min(actor_rate, cores / (actor_cpu + learner_cpu))
    return (f"actor alone {actor_rate:,.0f} steps/s = {actor_rate / raw_rate:.0%} of raw; CPU per env step: raw env "
            f"{raw_cpu * 1e6:.1f} us, actor {actor_cpu * 1e6:.1f} us, PPO's update {learner_cpu * 1e6:.1f} us; "
            f"{cores} cores allow at most {ceiling:,.0f} steps/s = {ceiling / raw_rate:.0%} of raw")


def python_envs(quick: bool) -> None:
    """The host collector: raw vector-env stepping against PPO's training throughput on the same env and
    concurrency (the experiment's settings), and LunarLander to an evaluation mean of 200, whole process."""
    import importlib.util

    from maze_jax.collectors.seeds import with_seeds
    from maze_jax.shell.collectors import envpool_xla
    from maze_jax.shell.collectors.host import rollout_host_trainer
    from maze_jax.shell.session import build
    from maze_jax.shell.settings import HostSettings, compose_config, read_settings

    backends = ["gymnasium"] + (["envpool"] if importlib.util.find_spec("envpool") else [])
    for env_id in ("CartPole-v1", "LunarLander-v3"):
        for backend in backends:
            raw, raw_cpu = raw_vector_rate(env_id, backend, 16)
            cfg, _ = compose_config(["+experiment=lunarlander_ppo", f"env.name={env_id}", f"env.backend={backend}",
                                     "seeding.agent_base_seed=0", "seeding.env_base_seed=0"])
            spec, trainer = build(read_settings(cfg), echo=lambda *a, **k: None)
            costs = python_costs(spec, trainer, raw_cpu, raw)
            rate = training_rate(trainer)
            line = (f"{env_id} ({backend}, 16 envs): raw vector env {raw:,.0f} steps/s; PPO training {rate:,.0f} "
                    f"steps/s = {rate / raw:.0%} of raw (target: 60%)")
            if envpool_xla.fits(trainer.algorithm, spec):  # the same learner fed by envpool stepped from Python
                stepped = training_rate(with_seeds(rollout_host_trainer(trainer.algorithm, spec, 1, HostSettings()),
                                                   1))
                line += (f" from envpool's jitted rollouts; from envpool stepped in Python {stepped:,.0f} steps/s "
                         f"= {stepped / raw:.0%}")
            print(f"{line}\n    {costs}", flush=True)
    for backend in backends:
        for seed in [0] if quick else [0, 1, 2]:
            with tempfile.TemporaryDirectory() as log_dir:  # the run directories go with it
                cmd = [sys.executable, "-m", "maze_jax.train", "+experiment=lunarlander_ppo", f"env.backend={backend}",
                       f"seeding.agent_base_seed={seed}", f"seeding.env_base_seed={seed}", f"log_base_dir={log_dir}"]
                start = time.perf_counter()
                proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
                seconds = time.perf_counter() - start
            epochs = len(re.findall(r"\*\*\*\*\*\*\*\*\*\* Iteration", proc.stdout))
            final = re.search(r"\|final\s+BaseEnvEvents\s+reward\s+mean\s+\|\s+(\S+)", proc.stdout)
            solved = "reached the reward threshold" in proc.stdout
            print(f"LunarLander +experiment=lunarlander_ppo ({backend}) seed {seed}: "
                  f"{'evaluation mean >= 200' if solved else 'NOT solved'} after {epochs} epochs in {seconds:.0f} s "
                  f"(target: {45 if backend == 'envpool' else 75} s), final 100-episode evaluation "
                  f"{final.group(1) if final else '?'} (target: 200)", flush=True)


def training_rate(trainer, epochs: int = 2) -> float:
    """Env steps per second of a host trainer's epochs after its first (which compiles), whole epochs; closes it."""
    state = trainer.init(jax_key(0), jax_key(1))
    state, metrics = trainer.train_epoch(state)  # compiles the act and update programs
    start, steps = time.perf_counter(), 0
    for _ in range(epochs):
        state, metrics = trainer.train_epoch(state)
        steps += int(metrics["train_BaseEnvEvents/reward/step_count"])
    rate = steps / (time.perf_counter() - start)
    trainer.close()
    return rate


def evosax_generation_seconds(population: int, hidden: int, n_steps: int, repeats: int = 5) -> tuple[float, float]:
    """evosax's OpenES on gymnax CartPole-v1 as its examples run it: ask, every member playing `n_steps` steps
    (auto-reset, fitness: the first episode's return; argmax actions of a tanh MLP), tell; one jitted generation.
    Returns (seconds per generation, compile seconds)."""
    import flax.linen as nn
    import gymnax
    import jax
    import jax.numpy as jnp
    import optax
    from evosax.algorithms import Open_ES

    env, env_params = gymnax.make("CartPole-v1")

    class MLP(nn.Module):
        @nn.compact
        def __call__(self, x):
            for _ in range(2):
                x = nn.tanh(nn.Dense(hidden)(x))
            return nn.Dense(2)(x)

    model = MLP()
    es = Open_ES(population_size=population, solution=model.init(jax.random.key(0), jnp.zeros(4)),
                 optimizer=optax.adam(0.01), std_schedule=optax.constant_schedule(0.02))
    es_params = es.default_params

    def rollout(params, key):
        obs, state = env.reset(jax.random.fold_in(key, 0), env_params)

        def step(carry, k):
            obs, state, total, alive = carry
            action = jnp.argmax(model.apply(params, obs))
            obs, state, reward, terminated, truncated, _ = env.step(k, state, action, env_params)
            return (obs, state, total + reward * alive, alive * (1 - (terminated | truncated))), None

        (_, _, total, _), _ = jax.lax.scan(step, (obs, state, 0.0, 1.0), jax.random.split(key, n_steps))
        return total

    @jax.jit
    def generation(state, key):
        k_ask, k_eval, k_tell = jax.random.split(key, 3)
        members, state = es.ask(k_ask, state, es_params)
        fitness = jax.vmap(rollout)(members, jax.random.split(k_eval, population))
        state, _ = es.tell(k_tell, members, -fitness, state, es_params)  # evosax minimises
        return state, fitness

    state = es.init(jax.random.key(1), model.init(jax.random.key(0), jnp.zeros(4)), es_params)
    start = time.perf_counter()
    compiled = generation.lower(state, jax.random.key(2)).compile()
    compile_s = time.perf_counter() - start
    state, fitness = compiled(state, jax.random.key(2))
    jax.block_until_ready(fitness)
    start = time.perf_counter()
    for i in range(repeats):
        state, fitness = compiled(state, jax.random.key(3 + i))
    jax.block_until_ready(fitness)
    return (time.perf_counter() - start) / repeats, compile_s


def compare_evosax(populations: list[int], hidden: int = 32, n_steps: int = 500) -> None:
    """Our ES epoch (one update) against evosax's generation at equal settings, both counted as population x
    n_steps simulated env steps per update, whatever the episodes did."""
    for population in populations:
        ours, ours_compile = compiled_trainer("es", [f"algorithm.n_rollouts_per_update={population}",
                                                     f"model.hidden_units=[{hidden},{hidden}]"])
        ours_rate = population * n_steps / epoch_seconds(ours)[0]
        theirs, theirs_compile = evosax_generation_seconds(population, hidden, n_steps)
        theirs_rate = population * n_steps / theirs
        print(f"population {population:5d}: maze_jax {ours_rate / 1e6:5.2f} M steps/s (compile {ours_compile:.1f} s), "
              f"evosax OpenES {theirs_rate / 1e6:5.2f} M steps/s (compile {theirs_compile:.1f} s): "
              f"ratio {ours_rate / theirs_rate:.2f}", flush=True)


def purejaxrl_rate(n_envs: int = 16, n_steps: int = 128, n_minibatches: int = 4, n_passes: int = 4,
                   updates: int = 10, hidden: int = 64, repeats: int = 5) -> tuple[float, float]:
    """A PureJaxRL-style PPO loop (one jitted function: `updates` x (rollout scan, GAE, passes of shuffled
    minibatches), separate 64x64 tanh actor and critic, Adam with grad-norm clipping) on gymnax CartPole-v1:
    (env steps per second, compile seconds), counted as ours: n_envs x n_steps x updates per call."""
    import flax.linen as nn
    import gymnax
    import jax
    import jax.numpy as jnp
    import optax

    env, env_params = gymnax.make("CartPole-v1")

    class Net(nn.Module):
        n_out: int

        @nn.compact
        def __call__(self, x):
            for _ in range(2):
                x = nn.tanh(nn.Dense(hidden)(x))
            return nn.Dense(self.n_out)(x)

    actor, critic = Net(2), Net(1)
    tx = optax.chain(optax.clip_by_global_norm(0.5), optax.adam(3e-4))

    def losses(params, batch):
        obs, action, logp_old, adv, target = batch
        logits = actor.apply(params["actor"], obs)
        logp = jax.nn.log_softmax(logits)[jnp.arange(action.shape[0]), action]
        ratio = jnp.exp(logp - logp_old)
        adv = (adv - adv.mean()) / (adv.std() + 1e-8)
        policy = -jnp.minimum(ratio * adv, jnp.clip(ratio, 0.8, 1.2) * adv).mean()
        value = ((critic.apply(params["critic"], obs)[:, 0] - target) ** 2).mean()
        entropy = -(jax.nn.softmax(logits) * jax.nn.log_softmax(logits)).sum(-1).mean()
        return policy + 0.5 * value - 0.0 * entropy

    def update(carry, _):
        params, opt_state, env_state, obs, key = carry

        def step(c, _):
            env_state, obs, key = c
            key, k_act, k_env = jax.random.split(key, 3)
            logits = actor.apply(params["actor"], obs)
            action = jax.random.categorical(k_act, logits)
            logp = jax.nn.log_softmax(logits)[jnp.arange(n_envs), action]
            value = critic.apply(params["critic"], obs)[:, 0]
            obs2, env_state, reward, terminated, truncated, _ = jax.vmap(env.step, (0, 0, 0, None))(
                jax.random.split(k_env, n_envs), env_state, action, env_params)
            return (env_state, obs2, key), (obs, action, logp, value, reward, terminated | truncated)

        (env_state, obs, key), (b_obs, b_act, b_logp, b_val, b_rew, b_done) = jax.lax.scan(
            step, (env_state, obs, key), None, n_steps)
        last = critic.apply(params["critic"], obs)[:, 0]

        def gae(c, t):
            next_adv, next_value = c
            reward, done, value = t
            delta = reward + 0.99 * next_value * (1 - done) - value
            adv = delta + 0.99 * 0.95 * (1 - done) * next_adv
            return (adv, value), adv

        _, adv = jax.lax.scan(gae, (jnp.zeros(n_envs), last), (b_rew, b_done, b_val), reverse=True)
        batch = jax.tree.map(lambda x: x.reshape((n_steps * n_envs,) + x.shape[2:]),
                             (b_obs, b_act, b_logp, adv, adv + b_val))

        def one_pass(c, k):
            def minibatch(c, mb):
                params, opt_state = c
                grads = jax.grad(losses)(params, mb)
                updates_, opt_state = tx.update(grads, opt_state)
                return (optax.apply_updates(params, updates_), opt_state), None

            order = jax.random.permutation(k, n_steps * n_envs).reshape(n_minibatches, -1)
            return jax.lax.scan(minibatch, c, jax.tree.map(lambda x: x[order], batch))[0], None

        key, k_passes = jax.random.split(key)
        (params, opt_state), _ = jax.lax.scan(one_pass, (params, opt_state), jax.random.split(k_passes, n_passes))
        return (params, opt_state, env_state, obs, key), b_rew.sum()

    @jax.jit
    def train(carry):
        return jax.lax.scan(update, carry, None, updates)

    key = jax.random.key(0)
    params = {"actor": actor.init(key, jnp.zeros(4)), "critic": critic.init(key, jnp.zeros(4))}
    obs, env_state = jax.vmap(env.reset, (0, None))(jax.random.split(key, n_envs), env_params)
    carry = (params, tx.init(params), env_state, obs, key)
    start = time.perf_counter()
    compiled = train.lower(carry).compile()
    compile_s = time.perf_counter() - start
    carry, rewards = compiled(carry)
    jax.block_until_ready(rewards)
    start = time.perf_counter()
    for _ in range(repeats):
        carry, rewards = compiled(carry)
    jax.block_until_ready(rewards)
    return n_envs * n_steps * updates * repeats / (time.perf_counter() - start), compile_s


def ppo_rate(overrides: list[str], epochs: int = 2) -> float:
    """PPO training env steps/s of a built (not CLI) run, after one warm-up epoch that compiles and starts workers."""
    from maze_jax.shell.session import build
    from maze_jax.shell.settings import compose_config, read_settings

    cfg, _ = compose_config(["algorithm=ppo", "model.hidden_units=[64,64]", "algorithm.n_rollout_steps=128",
                             "algorithm.batch_size=256", "algorithm.epoch_length=2", "seeding.agent_base_seed=0",
                             "seeding.env_base_seed=0", *overrides])
    _, trainer = build(read_settings(cfg), echo=lambda *a, **k: None)
    try:
        state, _ = trainer.train_epoch(trainer.init(jax_key(0), jax_key(1)))
        start, steps = time.perf_counter(), 0
        for _ in range(epochs):
            state, metrics = trainer.train_epoch(state)
            steps += int(metrics["train_BaseEnvEvents/reward/step_count"])
        return steps / (time.perf_counter() - start)
    finally:
        trainer.close()


def learner_rate(n_envs: int = 32) -> float:
    """Samples per second PPO's update (4 epochs of minibatches of 256, 64x64) takes in, from a collected rollout."""
    import jax

    from maze_jax.shell.collectors.host import RolloutCollector
    from maze_jax.shell.session import build
    from maze_jax.shell.settings import compose_config, read_settings

    cfg, _ = compose_config(["env=gymnasium", "algorithm=ppo", "model.hidden_units=[64,64]",
                             "algorithm.n_rollout_steps=128", "algorithm.batch_size=256",
                             f"runner.concurrency={n_envs}"])
    spec, trainer = build(read_settings(cfg), echo=lambda *a, **k: None)
    learner = jax.tree.map(lambda x: x[None], trainer.init(jax_key(0), jax_key(1)).learner)
    collector = RolloutCollector(trainer.algorithm, spec, n_envs, 128, 1, 0, "sync")
    trajectory = collector.collect(learner.params, jax_key(2)[None])[0]
    collector.close()
    update = jax.jit(jax.vmap(trainer.algorithm.update))
    jax.block_until_ready(update(learner, trajectory))
    start = time.perf_counter()
    for _ in range(5):
        learner, _ = update(learner, trajectory)
    jax.block_until_ready(learner)
    return 5 * n_envs * 128 / (time.perf_counter() - start)


def ray_workers(quick: bool) -> None:
    """runner=ray against the single-process collector on a slow env, its overhead on a fast one, the learner."""
    scripts = os.path.dirname(os.path.abspath(__file__))
    os.environ["PYTHONPATH"] = os.pathsep.join([scripts, REPO, os.environ.get("PYTHONPATH", "")])  # Ray's workers
    slow = ["env=gymnasium", "env.name=slow_env:MazeJaxBench/SlowCartPole-v1"]
    local = {}
    for n_envs in (8, 16, 32):
        local[n_envs] = ppo_rate([*slow, f"runner.concurrency={n_envs}"])
        print(f"slow env, single process, sync, {n_envs:2d} envs: {local[n_envs]:8,.0f} steps/s", flush=True)
    if not quick:
        rate = ppo_rate([*slow, "runner.concurrency=16", "runner.vectorization=async"])
        print(f"slow env, single process, async (a process per env), 16 envs: {rate:8,.0f} steps/s", flush=True)
    for workers in (1, 2, 4):
        rate = ppo_rate([*slow, "runner=ray", f"runner.num_workers={workers}", "runner.envs_per_worker=8"])
        print(f"slow env, runner=ray, {workers} workers x 8 envs: {rate:8,.0f} steps/s "
              f"({rate / local[8 * workers]:.1f}x the single process at {8 * workers} envs)", flush=True)
    fast_local = ppo_rate(["env=gymnasium", "runner.concurrency=16"])
    fast_ray = ppo_rate(["env=gymnasium", "runner=ray", "runner.num_workers=1", "runner.envs_per_worker=16"])
    print(f"fast CartPole-v1, 16 envs: single process {fast_local:,.0f} steps/s, one Ray worker {fast_ray:,.0f} "
          f"steps/s: {1e6 * (1 / fast_ray - 1 / fast_local):+.1f} us per env step", flush=True)
    print(f"learner alone: PPO's update takes in {learner_rate():,.0f} samples/s", flush=True)


GRID_KEYS = {"algorithm.lr": "1e-4,3e-4,1e-3,3e-3", "algorithm.entropy_coef": "0,0.001,0.01,0.1"}


def timed_command(args: list[str], tmp: str, name: str) -> tuple[float, str]:
    """(seconds, stdout) of `python -m maze_jax.train ARGS`, whole process, with an empty compilation cache."""
    cmd = [sys.executable, "-m", "maze_jax.train", *args, f"compilation_cache_dir={os.path.join(tmp, name + '-cache')}",
           f"log_base_dir={os.path.join(tmp, name)}", "seeding.agent_base_seed=0", "seeding.env_base_seed=0"]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-3000:])
    return time.perf_counter() - start, proc.stdout


def summary_rows(stdout: str) -> list[tuple[str, float, float]]:
    """(overrides, best, final) of each row of the summary table a grid or a sweep prints at its end."""
    rows = re.findall(r"^\s*\d+ \| (.+?)\s+\|\s+(\S+) \|\s+\d+ \|\s+(\S+) \|", stdout.split("\nGrid of ")[-1]
                      .split("\nSweep of ")[-1], re.M)
    return [(o, float(b), float(f)) for o, b, f in rows]


def grid_against_multirun(epochs: int = 3) -> None:
    base = ["env=cartpole", "algorithm=ppo", f"algorithm.n_epochs={epochs}", "runner.stop_when_solved=false"]
    grid_args = [f"+grid.{k.split('.', 1)[1]}=[{v}]" for k, v in GRID_KEYS.items()]
    with tempfile.TemporaryDirectory() as tmp:
        grid_s, grid_out = timed_command([*base, *grid_args], tmp, "grid")
        sweep_s, sweep_out = timed_command(["--multirun", *base, *(f"{k}={v}" for k, v in GRID_KEYS.items())], tmp,
                                           "multirun")
    compiled = re.search(r"Compiled in ([\d.]+) s", grid_out).group(1)
    grid_rows, sweep_rows = summary_rows(grid_out), summary_rows(sweep_out)
    print(f"one program (+grid): {grid_s:6.1f} s (compile {compiled} s), {len(grid_rows)} configurations; median "
          f"final evaluation {np.median([r[2] for r in grid_rows]):.1f}", flush=True)
    print(f"Hydra multirun:      {sweep_s:6.1f} s, {len(sweep_rows)} jobs; median final evaluation "
          f"{np.median([r[2] for r in sweep_rows]):.1f}", flush=True)
    print(f"speed-up: {sweep_s / grid_s:.1f}x", flush=True)
    single = epoch_seconds(compiled_trainer("ppo", ["env=cartpole"])[0])[0]
    grid_epoch = epoch_seconds(compiled_trainer("ppo", ["env=cartpole", *grid_args])[0])[0]
    print(f"in-process, compile apart: one epoch of the 16 configurations {grid_epoch:.2f} s, of one configuration "
          f"{single:.2f} s ({grid_epoch / single:.1f}x): the program saves each job's start, compile and evaluation, "
          "while training costs about what the jobs' does", flush=True)


PBT_GRID = {"algorithm.lr": "5e-4,1e-3,2e-3,4e-3", "algorithm.clip_range": "0.1,0.3"}


def pbt_against_grid(epochs: int = 12) -> None:
    base = [*PENDULUM, f"algorithm.n_epochs={epochs}", "runner.stop_when_solved=false", "algorithm.patience=0"]
    with tempfile.TemporaryDirectory() as tmp:
        grid_s, grid_out = timed_command([*base, *(f"+grid.{k.split('.', 1)[1]}=[{v}]" for k, v in PBT_GRID.items())],
                                         tmp, "grid")
        pbt_s, pbt_out = timed_command([*base, "+experiment=pbt", "runner.n_seeds=8", "pbt.interval=2",
                                        "pbt.explore=[lr,clip_range]"], tmp, "pbt")
    finals = sorted(r[2] for r in summary_rows(grid_out))
    member_finals = re.findall(r"\|final\s+BaseEnvEvents\s+reward\s+mean_seed_max\s+\|\s+(\S+)", pbt_out)
    print(f"grid of 8 configurations, {epochs} epochs each ({grid_s:.0f} s): final evaluations of their best models "
          f"{', '.join(f'{f:.1f}' for f in finals)}; median {np.median(finals):.1f}, best {finals[-1]:.1f}", flush=True)
    print(f"PBT of 8 members, {epochs} epochs each ({pbt_s:.0f} s): the best member's final evaluation "
          f"{float(member_finals[-1].replace(',', '')):.1f}", flush=True)


def jax_key(seed: int):
    import jax

    return jax.random.key(seed)


def pendulum(max_epochs: int = 40) -> str:
    import jax

    from maze_jax.shell.loop import evaluation_stats

    programs, compile_s = compiled_trainer("ppo", PENDULUM[2:], "Pendulum-v1")
    state, steps, start = programs.init(jax.random.key(0), jax.random.key(1)), 0, time.perf_counter()
    for epoch in range(max_epochs):
        state, metrics = programs.train_epoch(state)
        steps += int(metrics["train_BaseEnvEvents/reward/step_count"])
        score = evaluation_stats(programs.evaluate, state, jax.random.key(epoch))["eval_BaseEnvEvents/reward/mean"]
        if score >= -200:
            return (f"evaluation mean {float(score):.1f} after {steps:,} env steps, "
                    f"{time.perf_counter() - start:.1f} s training + {compile_s:.1f} s compile")
    return f"NOT reached -200 in {steps:,} env steps (last {float(score):.1f})"


def cutting(max_epochs: int = 10) -> None:
    import types

    import jax

    from maze_jax.collectors import policy_params
    from maze_jax.envs.cutting_2d import greedy_policy_act
    from maze_jax.models import RandomPolicy
    from maze_jax.shell.session import build
    from maze_jax.shell.settings import compose_config, read_settings
    from maze_jax.shell.programs import compile_programs
    from maze_jax.trained_policy import TrainedPolicy

    cfg, _ = compose_config([*CUTTING, "seeding.env_base_seed=0", "seeding.agent_base_seed=0"])
    start = time.perf_counter()
    env_spec, trainer = build(read_settings(cfg), echo=lambda *a, **k: None)
    programs = compile_programs(trainer, jax.random.key(0), echo=lambda *a, **k: None)
    setup_s = time.perf_counter() - start
    raw_per_step = lambda policy, params: -float(
        TrainedPolicy(policy, params, env_spec).play(64, jax.random.key(7))[0].mean()) / 180
    bound = 1 / 6  # the orders of one demand cycle add up to one raw piece
    state, steps, start = programs.init(jax.random.key(0), jax.random.key(1)), 0, time.perf_counter()
    for epoch in range(1, max_epochs + 1):
        state, metrics = programs.train_epoch(state)
        steps += int(metrics["train_BaseEnvEvents/reward/step_count"])
        ppo = raw_per_step(trainer.algorithm.policy, policy_params(state))
        if ppo <= bound + 1e-6:
            break
    print(f"PPO: {ppo:.4f} raw pieces per step after {epoch} epochs, {steps:,} sub-steps, "
          f"{time.perf_counter() - start:.1f} s training and evaluating (the 64-episode evaluation's compile included) "
          f"+ {setup_s:.1f} s normalisation statistics and compile", flush=True)
    for name, policy in (("random masked", RandomPolicy(env_spec)),
                         ("first fit", types.SimpleNamespace(act=greedy_policy_act(first_fit=True))),
                         ("best fit", types.SimpleNamespace(act=greedy_policy_act(first_fit=False)))):
        print(f"{name}: {raw_per_step(policy, None):.4f} raw pieces per step", flush=True)
    print(f"lower bound (order area / raw piece area): {bound:.4f}", flush=True)


def scaling(sizes: list[int], n_devices: int) -> None:
    """ES and PPO throughput for each batch size, the batch split over `n_devices` devices."""
    for size in sizes:
        if size % n_devices:
            continue
        devices = f"runner.n_devices={n_devices}"
        es_rate, es_compile = throughput("es", [f"algorithm.n_rollouts_per_update={size}",
                                                "model.hidden_units=[32,32]", devices], repeats=2)
        ppo_rate, ppo_compile = throughput("ppo", [f"runner.concurrency={size}", "algorithm.n_rollout_steps=128",
                                                   f"algorithm.batch_size={size * 32}", "algorithm.epoch_length=1",
                                                   "model.hidden_units=[64,64]", devices], repeats=2)
        print(f"{n_devices} device(s), batch {size:5d}: ES {es_rate / 1e6:6.2f} M steps/s (compile {es_compile:.1f} s), "
              f"PPO {ppo_rate / 1e3:7.1f} k steps/s (compile {ppo_compile:.1f} s)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one seed, fewer population sizes")
    parser.add_argument("--only", nargs="*", default=["compile", "solve", "es", "ppo", "python", "pendulum", "cutting"])
    parser.add_argument("--populations", default="16,128,1024,4096")
    parser.add_argument("--sizes", default="16,256,4096", help="batch sizes of the scale section")
    parser.add_argument("--compare-evosax", action="store_true",
                        help="ES against evosax's OpenES at equal settings (needs evosax installed)")
    parser.add_argument("--against", metavar="COMMIT",
                        help="compile section: this checkout's cold compile times against COMMIT's, run by turns")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each checkout with --against")
    parser.add_argument("--devices", type=int, default=0, help=argparse.SUPPRESS)  # the scale section's workers
    args = parser.parse_args()
    from maze_jax.xla_flags import apply_defaults, run_programs_inline

    apply_defaults()  # the CLI's XLA flags and dispatch, so in-process figures match it
    run_programs_inline()
    import jax

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"jax {jax.__version__} on {jax.devices()[0].platform}", flush=True)
    if args.devices:  # a worker of the scale section, started below with its own device count
        scaling([int(n) for n in args.sizes.split(",")], args.devices)
        return
    if args.compare_evosax:
        print("\n== ES against evosax OpenES: gymnax CartPole-v1, 32x32 tanh, 500 steps per member, "
              "population x 500 steps counted per update ==", flush=True)
        compare_evosax([128] if args.quick else [int(p) for p in args.populations.split(",")])
        return
    if "compile" in args.only and args.against:
        print(f"\n== cold compile times per program, whole process: this checkout against {args.against}, "
              f"run by turns ==", flush=True)
        compile_against(args.against, args.rounds)
    elif "compile" in args.only:
        print("\n== compile times per program, whole process: empty cache, then warm ==", flush=True)
        compile_times()
    if "solve" in args.only:
        print("\n== time to solve CartPole-v1, default command, whole process ==", flush=True)
        import ml_dtypes

        print(f"imports in a fresh process: jax {import_seconds('jax'):.2f} s (ml_dtypes {ml_dtypes.__version__} "
              f"{import_seconds('ml_dtypes', after='numpy'):.2f} s of it), maze_jax.shell.session "
              f"{import_seconds('maze_jax.shell.session'):.2f} s", flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            for algorithm in ("es", "ppo", "a2c"):
                for seed in [0] if args.quick else [0, 1, 2]:
                    cache = os.path.join(tmp, f"cache-{algorithm}-{seed}")
                    cold, info_cold = time_to_solve(algorithm, seed, cache, tmp)
                    warm, info_warm = time_to_solve(algorithm, seed, cache, tmp)
                    print(f"{algorithm} seed {seed}: first run {cold:5.2f} s ({info_cold}); "
                          f"repeat {warm:5.2f} s ({info_warm})", flush=True)
    if "es" in args.only:
        print("\n== ES epoch throughput, CartPole-v1, 32x32 network, 500 steps per member ==", flush=True)
        for population in [128] if args.quick else [int(p) for p in args.populations.split(",")]:
            rate, compile_s = throughput("es", [f"algorithm.n_rollouts_per_update={population}",
                                                "model.hidden_units=[32,32]"])
            print(f"population {population:5d}: {rate / 1e6:6.2f} M env steps/s (compile {compile_s:.2f} s)", flush=True)
    if "ppo" in args.only:
        print("\n== PPO throughput, CartPole-v1, 64x64, 16 envs x 128 steps, 4 epochs x 4 minibatches ==", flush=True)
        rate, compile_s = throughput("ppo", ["model.hidden_units=[64,64]", "runner.concurrency=16",
                                             "algorithm.n_rollout_steps=128", "algorithm.batch_size=512",
                                             "algorithm.n_optimization_epochs=4", "algorithm.epoch_length=10"])
        print(f"{rate:,.0f} env steps/s (compile {compile_s:.2f} s)", flush=True)
        reference, reference_compile = purejaxrl_rate()
        print(f"a PureJaxRL-style loop at the same settings: {reference:,.0f} env steps/s (compile "
              f"{reference_compile:.2f} s); ratio {rate / reference:.2f}", flush=True)
        for length, what in ((16, "sequences of 16 steps, the default"), (128, "whole rollouts")):
            rnn, rnn_compile = throughput("ppo", ["model=vector_obs_rnn", "model.hidden_units=[64]",
                                                  "model.memory_units=64", "runner.concurrency=16",
                                                  "algorithm.n_rollout_steps=128", "algorithm.batch_size=512",
                                                  "algorithm.n_optimization_epochs=4", "algorithm.epoch_length=10",
                                                  f"algorithm.sequence_length={length}"])
            print(f"model=vector_obs_rnn (64, then a GRU of 64) at the same settings, replaying {what}: "
                  f"{rnn:,.0f} env steps/s (compile {rnn_compile:.2f} s), {rnn / rate:.2f} of the feed-forward rate "
                  "(target: 0.33)", flush=True)
    if "scale" in args.only:
        print("\n== scale: env steps/s against the batch, one device and all devices ==", flush=True)
        cpu = jax.devices()[0].platform == "cpu"
        for n_devices in (1, 4 if cpu else jax.device_count()):
            env = {**os.environ}
            if cpu and n_devices > 1:
                env["XLA_FLAGS"] = env.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={n_devices}"
            subprocess.run([sys.executable, __file__, "--devices", str(n_devices), "--sizes", args.sizes], env=env)
    if "cutting" in args.only:
        print("\n== PPO on the masked cutting env: python -m maze_jax.train " + " ".join(CUTTING) + " ==", flush=True)
        cutting()
    if "es-sampling" in args.only:
        print("\n== ES acting on the mode against sampling (algorithm.deterministic), up to 60 epochs ==", flush=True)
        es_sampling([0] if args.quick else [0, 1, 2])
    if "ray" in args.only:
        print("\n== runner=ray: Python env workers on a local Ray ==", flush=True)
        ray_workers(args.quick)
    if "python" in args.only:
        print("\n== Python envs (host collector), 2-core figures in the README ==", flush=True)
        python_envs(args.quick)
    if "pendulum" in args.only:
        print("\n== PPO on Pendulum-v1: python -m maze_jax.train " + " ".join(PENDULUM) + " ==", flush=True)
        print(pendulum(), flush=True)
    if "grid" in args.only:
        print("\n== 16 PPO configurations on CartPole-v1: one program against a Hydra multirun, whole process ==",
              flush=True)
        grid_against_multirun()
    if "pbt" in args.only:
        print("\n== PPO on Pendulum-v1: PBT of 8 members against a grid of 8 configurations, equal env steps ==",
              flush=True)
        pbt_against_grid()


if __name__ == "__main__":
    main()
