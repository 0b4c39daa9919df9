"""Python envs: ids resolved gymnax > envpool > gymnasium, spaces converted both ways, gymnasium wrappers, masks and
sub-steps, the host collector's vector env, and the structured cutting env ported to numpy matching the JAX one."""

from __future__ import annotations

import importlib.util
import threading
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import python_envs
from conftest import init_state, make_trainer
from maze_jax.collectors import EnvFailed
from maze_jax.shell.collectors.vector_env import Vectorization, VectorEnv
from maze_jax.config import ConfigError
from maze_jax.envs import build_env, make_env
from maze_jax.envs.python_env import to_observation
from maze_jax.shell.wrappers import python_wrappers, wrap_env

HAS_ENVPOOL = importlib.util.find_spec("envpool") is not None


def test_ids_resolve_gymnax_then_envpool_then_gymnasium():
    assert not make_env("CartPole-v1").is_python  # gymnax has it: pure JAX
    forced = make_env("CartPole-v1", backend="gymnasium")
    assert forced.is_python and forced.env.envpool_id is None and forced.reward_threshold == 475.0
    lunar = make_env("LunarLander-v3")
    assert lunar.is_python and lunar.reward_threshold == 200.0
    assert (lunar.env.envpool_id == "LunarLander-v3") == HAS_ENVPOOL
    said = []
    mapped = make_env("LunarLander-v2", backend="gymnasium", echo=lambda *a, **k: said.append(a[0]))
    assert mapped.name == "LunarLander-v3" and said == ["env.name=LunarLander-v2: this gymnasium has LunarLander-v3 "
                                                         "only; training on LunarLander-v3"]
    continuous = make_env("LunarLander-v3", kwargs={"continuous": True}, backend="gymnasium")
    assert continuous.env.action_space().shape == (2,)  # env.kwargs reach the constructor
    registered = make_env("python_envs:MazeJaxTest/Countdown-v0")
    assert registered.is_python and registered.reward_threshold == 5.5


@pytest.mark.parametrize("name, backend", [("LunarLander-v2", "auto"), ("LunarLander-v2", "gymnasium"),
                                           ("LunarLander-v3", "auto"), ("CartPole-v1", "auto"),
                                           ("CartPole-v0", "gymnasium"), ("python_envs:MazeJaxTest/Countdown-v4", "auto")])
def test_run_directories_are_named_after_the_env_that_trains(name, backend):
    from maze_jax.config import env_label
    from maze_jax.envs.make import run_label, trained_id

    trained = trained_id(name, backend)
    assert trained.rpartition(":")[2] == make_env(name, backend=backend, echo=lambda *a, **k: None).name
    target = "maze_jax.envs.make_env"
    label = run_label(name, "gym_env", backend, target)
    assert label == {"LunarLander-v2": "LunarLander-v2" if HAS_ENVPOOL and backend == "auto" else "LunarLander-v3",
                     "python_envs:MazeJaxTest/Countdown-v4": "python_envs_MazeJaxTest_Countdown-v0"}.get(name, name)
    assert run_label(name, "mine", backend, "my_module.make") == env_label(name, "mine")  # another factory's ids


def test_evaluation_episodes_a_python_env_does_not_end_within_the_step_limit_count_in_no_statistic():
    from maze_jax.collectors import policy_params
    from maze_jax.collectors.seeds import one_seed_evaluation
    from maze_jax.shell.collectors.host import HostEvaluator
    from maze_jax.shell.loop import play_in_batches
    from maze_jax.algorithms.metrics import episode_table

    spec = build_env({"_target_": "python_envs.Countdown", "length": 1000})  # no time limit: the evaluator's cap
    env_spec, trainer = make_trainer(["algorithm=ppo", "model.hidden_units=[4]"], env=spec)
    params = policy_params(init_state(trainer))
    evaluator = one_seed_evaluation(HostEvaluator(trainer.algorithm.policy, env_spec, 3, 1, True, max_steps=20))
    try:
        returns, lengths = play_in_batches(evaluator, params, jax.random.key(0), 3)
    finally:
        evaluator.close()
    assert np.isnan(returns).all() and np.isnan(lengths).all()  # not 3 episodes of return 0 and length 0
    polls = []  # a signal during the episodes stops them at the next step, in training's and the final evaluation
    evaluator = one_seed_evaluation(HostEvaluator(trainer.algorithm.policy, env_spec, 3, 1, True, max_steps=20))
    try:
        assert evaluator(params, jax.random.key(0), lambda: polls.append(1) or len(polls) > 5) is None
        assert play_in_batches(lambda p, k: evaluator(p, k, lambda: True), params, jax.random.key(0), 3) is None
    finally:
        evaluator.close()
    assert len(polls) == 6
    rows = episode_table(returns, lengths, "final")
    assert rows["final_BaseEnvEvents/reward/episode_count"] == 0 and np.isnan(rows["final_BaseEnvEvents/reward/mean"])


def test_evaluation_steps_each_env_until_its_episode_ends_and_no_further():
    # one batch lasts as long as its longest episode: the envs that ended wait instead of playing on
    from maze_jax.collectors import policy_params
    from maze_jax.collectors.seeds import one_seed_evaluation
    from maze_jax.shell.collectors.host import HostEvaluator

    spec = build_env({"_target_": "python_envs.UnevenCountdown", "length": 5})
    env_spec, trainer = make_trainer(["algorithm=ppo", "model.hidden_units=[4]"], env=spec)
    evaluator = one_seed_evaluation(HostEvaluator(trainer.algorithm.policy, env_spec, 5, 1, True, max_steps=20))
    python_envs.UnevenCountdown.stepped = 0
    try:
        stats = evaluator(policy_params(init_state(trainer)), jax.random.key(0))
    finally:
        evaluator.close()
    assert sorted(np.asarray(stats.first_length).tolist()) == [1, 2, 3, 4, 5]
    assert python_envs.UnevenCountdown.stepped == 15  # not 5 envs x 5 steps


def test_a_python_env_without_a_time_limit_gets_one_and_a_note_says_so_when_it_cuts_an_episode(monkeypatch, capsys):
    import maze_jax.shell.collectors.vector_env as vector_env

    monkeypatch.setattr(vector_env, "DEFAULT_TIME_LIMIT", 4)
    monkeypatch.setattr(vector_env, "_NOTED", set())
    endless = build_env({"_target_": "python_envs.Countdown", "length": 10**9})
    envs = VectorEnv(endless.env, 2, seed=0)  # every host collector, ES's members and the evaluator step these
    truncated = []
    for _ in range(4):
        assert "time limit" not in capsys.readouterr().out  # said when the cut happens, not before
        truncated.append(envs.step(np.zeros(2, np.int32))[3])
    for _ in range(8):  # once per process
        envs.step(np.zeros(2, np.int32))
    envs.close()
    assert not any(t.any() for t in truncated[:3]) and truncated[3].all()
    assert capsys.readouterr().out.splitlines() == [
        "Note: env Countdown declares no time limit (gymnasium's max_episode_steps) and an episode reached 4 steps: "
        "it was cut there (env.max_episode_steps=N sets a limit)"]
    for own_limit in ({"_target_": "python_envs.Countdown", "length": 3, "truncates": True},  # ends its episodes
                      {"_target_": "python_envs.Countdown", "length": 3}):
        envs = VectorEnv(build_env(own_limit).env, 2, seed=0)
        ended = [envs.step(np.zeros(2, np.int32))[2:4] for _ in range(12)]
        envs.close()
        assert all(ended[i][own_limit.get("truncates", False)].all() for i in (2, 5, 8, 11))
    assert capsys.readouterr().out == ""  # an env that ends its own episodes gets no note


@pytest.mark.skipif(not HAS_ENVPOOL, reason="envpool is an optional extra: pip install '.[envpool]'")
def test_envpools_own_time_limits_are_read_and_its_unlimited_envs_get_one():
    from maze_jax.shell.collectors.vector_env import DEFAULT_TIME_LIMIT

    assert make_env("CartPole-v1", backend="envpool").env.max_episode_steps == 500
    cliff = make_env("CliffWalking-v1", backend="envpool")  # envpool's "no limit" is INT_MAX
    assert cliff.env.max_episode_steps is None
    envs = VectorEnv(cliff.env, 1, seed=0)  # the default limit applies to envpool too
    assert envs._envpool_kwargs["max_episode_steps"] == DEFAULT_TIME_LIMIT
    envs.close()


@pytest.mark.skipif(not HAS_ENVPOOL, reason="envpool is an optional extra: pip install '.[envpool]'")
def test_gymnasium_settings_envpool_lacks_build_gymnasiums_env_and_envpools_own_settings_keep_envpool():
    said = []
    slippery = make_env("FrozenLake-v1", kwargs={"is_slippery": False}, echo=lambda *a, **k: said.append(a[0]))
    assert slippery.env.envpool_id is None and said == [
        "env.kwargs: is_slippery is not a setting of envpool's FrozenLake-v1: building gymnasium's"]
    envs = VectorEnv(slippery.env, 1, seed=0)  # not slippery: right, right, down, down, down, right reaches the goal
    rewards = [envs.step(np.array([action]))[1][0] for action in (2, 2, 1, 1, 1, 2)]
    envs.close()
    assert rewards == [0, 0, 0, 0, 0, 1]
    assert make_env("FrozenLake-v1", kwargs={"size": 4}).env.envpool_id == "FrozenLake-v1"
    with pytest.raises(ConfigError, match="is_slippery is not a setting of envpool's FrozenLake-v1. Valid: .*size"):
        make_env("FrozenLake-v1", kwargs={"is_slippery": False}, backend="envpool")


def test_the_envpool_backend_without_envpool_says_to_install_it(monkeypatch):
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "envpool" else find_spec(name, *a))
    with pytest.raises(ConfigError, match=r"^env.backend=envpool: envpool is not installed \(pip install "
                                          r"'.\[envpool\]'\)$"):
        make_env("LunarLander-v3", backend="envpool")


def test_unknown_ids_list_close_matches_and_bad_settings_are_one_line():
    with pytest.raises(ConfigError, match="Close matches: LunarLander-v3"):
        make_env("LunarLandr-v3")
    with pytest.raises(ConfigError, match="module 'no_such_package' cannot be imported"):
        make_env("no_such_package:Thing-v0")
    # `module:Class` of an unregistered class: how to name it instead, not gymnasium's close matches
    with pytest.raises(ConfigError, match=r"python_envs has Countdown, but gymnasium has no id 'Countdown' .*"
                                          r"_target_: python_envs.Countdown.*entry_point=\"python_envs:Countdown\""):
        make_env("python_envs:Countdown")
    with pytest.raises(ConfigError, match="env.kwargs: Acrobot-v1 is a gymnax env"):
        make_env("Acrobot-v1", kwargs={"x": 1})


def test_own_gymnasium_env_by_target_takes_the_python_path():
    # `env._target_=...` on the command line: the env group's keys reach the class too, and the error says what to do
    with pytest.raises(ConfigError, match=r"unexpected keyword argument 'name' \(env._target_ given on the command "
                                          r"line keeps the env group's other keys: kwargs, name; give your env a "
                                          r"config file, conf/env/<name>.yaml"):
        build_env({"_target_": "python_envs.Countdown", "name": "CartPole-v1", "kwargs": {}})
    spec = build_env({"_target_": "python_envs.Countdown", "length": 4})
    assert spec.is_python and spec.name == "Countdown" and spec.env.observation_example().shape == (1,)
    envs = VectorEnv(spec.env, 3, seed=0)
    for _ in range(3):
        obs, reward, terminated, truncated, final = envs.step(np.ones(3, np.int32))
    obs, reward, terminated, truncated, final = envs.step(np.ones(3, np.int32))
    assert terminated.all() and (reward == 2.0).all()
    np.testing.assert_array_equal(final[:, 0], [0, 0, 0])  # the ended episode's last observation
    np.testing.assert_array_equal(obs[:, 0], [4, 4, 4])  # the next episode's first: reset at once
    envs.close()


@pytest.mark.parametrize("backend", ["gymnasium", "envpool"])
def test_a_step_of_some_envs_leaves_the_others_as_they_were(backend):
    # the evaluation steps only the envs whose first episode goes on: those step as in a step of all envs
    if backend == "envpool" and not HAS_ENVPOOL:
        pytest.skip("envpool is an optional extra: pip install '.[envpool]'")
    spec = make_env("CartPole-v1", backend=backend)
    some, every = VectorEnv(spec.env, 4, seed=0), VectorEnv(spec.env, 4, seed=0)
    waiting = np.array([False, True, False, False])
    start, ended = some.obs.copy(), 0
    for _ in range(30):  # pushed one way, the poles fall within 30 steps: ended envs reset in the same step
        obs, reward, terminated, truncated, final = some.step(np.ones(4, np.int32), ~waiting)
        expected = every.step(np.ones(4, np.int32))
        for got, want in zip((obs, reward, terminated, truncated, final), expected):
            np.testing.assert_array_equal(got[~waiting], want[~waiting])
        np.testing.assert_array_equal(obs[1], start[1])
        np.testing.assert_array_equal(final[1], start[1])
        assert reward[1] == 0.0 and not terminated[1] and not truncated[1]
        ended += int(terminated.sum())
    assert ended >= 3
    assert (some.env_steps, every.env_steps) == (30 * 3, 30 * 4)  # the waiting env took no step
    some.close(), every.close()


def test_a_step_of_some_envs_reports_their_events_and_kpis():
    spec = build_env({"_target_": "python_envs.UnevenCountdown", "length": 5})  # episodes of 1, 2 and 3 steps
    some, every = VectorEnv(spec.env, 3, seed=0), VectorEnv(spec.env, 3, seed=0)
    stepping = np.array([True, False, True])
    for _ in range(4):
        some.step(np.zeros(3, np.int32), stepping)
        every.step(np.zeros(3, np.int32))
        for got, want in zip(some.reports, every.reports):
            assert set(got) == set(want)
            for name in want:
                np.testing.assert_array_equal(got[name][stepping], want[name][stepping])
                assert got[name][1] == 0.0
    assert set(every.reports[1]) == {"length"}  # the KPI of an episode's end came through
    some.close(), every.close()


@pytest.mark.parametrize("algorithm", ["ppo", "es"])
def test_a_host_epoch_counts_its_env_steps_as_it_goes(algorithm):
    """`epoch_env_steps()`, read while the epoch polls `should_stop`, rises step by step to the epoch's steps, and
    starts from 0 in the next epoch: what the progress line shows while a slow env's epoch runs."""
    spec = make_env("CartPole-v1", backend="gymnasium")
    _, trainer = make_trainer([f"algorithm={algorithm}", "runner=dev", "model.hidden_units=[8]",
                               "runner.policy_lag=0", *TINY[algorithm]], spec)
    seen = []
    state = init_state(trainer)
    for _ in range(2):
        seen.append([])
        state, metrics = trainer.train_epoch(state, lambda: seen[-1].append(trainer.epoch_env_steps()) or False)
        steps = int(np.sum(metrics["train_BaseEnvEvents/reward/step_count"]))
        assert seen[-1][0] == 0 and seen[-1] == sorted(seen[-1]) and len(set(seen[-1])) > 3
        assert seen[-1][-1] < steps == trainer.epoch_env_steps()  # the last poll comes before the last step
    trainer.close()


def test_observations_and_actions_of_every_supported_space():
    spec = build_env({"_target_": "python_envs.AllSpaces"})
    example = spec.observation_example()
    shapes = {k: v.shape if not isinstance(v, dict) else {i: x.shape for i, x in v.items()} for k, v in example.items()}
    assert shapes == {"box": (2, 3), "discrete": (4,), "multi": (5,), "binary": (3,), "pair": {"0": (2,), "1": (1,)}}
    gym_space = spec.env.gym_observation_space
    converted = to_observation(gym_space, {"box": np.ones((2, 3)), "discrete": 2, "multi": np.array([1, 2]),
                                           "binary": np.array([1, 0, 1]), "pair": (1, np.array([0.5]))})
    np.testing.assert_array_equal(converted["discrete"], [0, 1, 0, 0])  # one-hot of 2 - start 1
    np.testing.assert_array_equal(converted["multi"], [0, 1, 0, 0, 1])
    np.testing.assert_array_equal(converted["pair"]["0"], [0, 1])
    assert converted["box"].dtype == np.float32
    actions = {"move": np.array([0, 2]), "pick": np.array([[1, 0], [0, 1]]), "force": np.array([[5.0, -5.0], [1, 1]])}
    env_actions = spec.env.to_env_action(actions)
    np.testing.assert_array_equal(env_actions["move"], [-1, 1])  # Discrete's start added
    np.testing.assert_array_equal(env_actions["force"], [[2.0, -2.0], [1.0, 1.0]])  # clipped to the Box
    train_an_epoch_each(spec, ("ppo", "es"))  # AllSpaces asserts each action is in its space


TINY = {"ppo": ["algorithm.epoch_length=1", "algorithm.n_rollout_steps=8", "algorithm.batch_size=16"],
        "es": ["algorithm.n_rollouts_per_update=4", "runner.n_eval_rollouts=2"],
        "sac": ["algorithm.epoch_length=8", "algorithm.initial_buffer_size=16", "algorithm.batch_size=8",
                "algorithm.replay_buffer_size=64"]}


def train_an_epoch_each(spec, algorithms: tuple) -> None:
    """One small epoch of each algorithm on `spec`'s env, whose episodes end within it: a finite reward mean."""
    for algorithm in algorithms:
        _, trainer = make_trainer([f"algorithm={algorithm}", "runner=dev", "model.hidden_units=[8]", *TINY[algorithm]],
                                  spec)
        state, metrics = trainer.train_epoch(init_state(trainer))
        assert np.isfinite(float(metrics["train_BaseEnvEvents/reward/mean"]))
        trainer.close()


def test_tuple_and_multibinary_actions_reach_the_env_in_its_own_form():
    spec = build_env({"_target_": "python_envs.TupleActions"})
    space = spec.env.action_space()
    assert space.spaces["0"].nvec == (2, 2, 2, 2) and space.spaces["1"].n == 3  # the grid's bits, then the choice
    env_actions = spec.env.to_env_action({"0": np.array([[1, 0, 0, 1], [0, 0, 1, 1]]), "1": np.array([0, 2])})
    assert isinstance(env_actions, tuple)
    np.testing.assert_array_equal(env_actions[0], [[[1, 0], [0, 1]], [[0, 0], [1, 1]]])
    assert env_actions[0].dtype == np.int8  # MultiBinary's own dtype
    np.testing.assert_array_equal(env_actions[1], [1, 3])  # Discrete's start added
    train_an_epoch_each(spec, ("ppo", "es", "sac"))  # TupleActions asserts each action is in its space


def test_unsupported_spaces_are_named_in_one_line():
    import gymnasium

    from maze_jax.envs.make import as_env_spec

    text = python_envs.Countdown()
    text.observation_space = gymnasium.spaces.Text(5)
    with pytest.raises(ConfigError, match="observation space Text.* is not supported"):
        as_env_spec(text)
    graph = python_envs.Countdown()
    graph.action_space = gymnasium.spaces.Tuple((gymnasium.spaces.Discrete(2), gymnasium.spaces.Text(3)))
    with pytest.raises(ConfigError, match="action space Text.* is not supported"):
        as_env_spec(graph)


def test_gymnasium_wrappers_by_class_path_in_order_and_joined_from_nested_keys():
    nested = {"gymnasium": {"wrappers": {"TimeLimit": {"max_episode_steps": 2}}}}
    assert python_wrappers(nested) == [("gymnasium.wrappers.TimeLimit", {"max_episode_steps": 2})]
    spec = build_env({"_target_": "python_envs.Countdown", "length": 10})
    wrapped = wrap_env(spec, {"gymnasium.wrappers.TimeLimit": {"max_episode_steps": 2},
                              "gymnasium.wrappers.TransformReward": {"func": abs}}, echo=lambda *a, **k: None)
    envs = VectorEnv(wrapped.env, 1, seed=0)
    envs.step(np.zeros(1, np.int32))
    _, reward, terminated, truncated, _ = envs.step(np.zeros(1, np.int32))
    assert truncated[0] and not terminated[0]  # the time limit of 2 steps, applied before the env's own end
    envs.close()
    with pytest.raises(ConfigError, match="need a gymnasium env, and CartPole-v1 is a JAX env"):
        wrap_env(make_env("CartPole-v1"), {"gymnasium.wrappers.FlattenObservation": {}})
    with pytest.raises(ConfigError, match="'frame_stack' is not a wrapper class"):
        wrap_env(spec, {"frame_stack": {}})


def test_normalisation_statistics_come_from_the_python_env():
    spec = build_env({"_target_": "python_envs.Countdown", "length": 4})
    wrapped = wrap_env(spec, {"observation_normalization": {}}, n_samples=512, echo=lambda *a, **k: None)  # 4 episodes an env
    stats = wrapped.env.statistics["observation"]
    np.testing.assert_allclose(stats["mean"], np.mean([4, 3, 2, 1]), rtol=1e-5)  # each episode sees 4, 3, 2, 1


def test_failing_envs_raise_one_env_failed_naming_env_step_and_exception():
    with pytest.raises(EnvFailed, match=r"env Countdown raised RuntimeError in reset \(vector step 0\): the simulator"):
        VectorEnv(build_env({"_target_": "python_envs.Countdown", "fail_in_reset": True}).env, 2, seed=0)
    spec = build_env({"_target_": "python_envs.Countdown", "fail_at": 3})
    envs = VectorEnv(spec.env, 2, seed=0)
    envs.step(np.zeros(2, np.int32))
    envs.step(np.zeros(2, np.int32))
    with pytest.raises(EnvFailed, match=r"env Countdown raised ValueError in step \(vector step 2\): pressure too high"):
        envs.step(np.zeros(2, np.int32))
    nan = VectorEnv(build_env({"_target_": "python_envs.Countdown", "nan_at": 2}).env, 2, seed=0)
    nan.step(np.zeros(2, np.int32))
    with pytest.raises(EnvFailed, match="non-finite rewards in vector step 2") as raised:
        nan.step(np.zeros(2, np.int32))
    assert raised.value.reason == "non-finite"


def test_an_env_call_past_its_deadline_fails_in_the_main_thread_and_is_reported_from_another():
    spec = build_env({"_target_": "python_envs.Countdown", "hang_at": 2})
    envs = VectorEnv(spec.env, 2, seed=0, vectorization=Vectorization("sync", 0.3))
    envs.step(np.zeros(2, np.int32))
    started = time.monotonic()
    with pytest.raises(EnvFailed, match=r"env Countdown did not return from step within 0.3 s \(vector step 1;"):
        envs.step(np.zeros(2, np.int32))  # the main thread: cut short
    assert time.monotonic() - started < 2 and envs.overdue() == ""
    envs.close()
    other = VectorEnv(build_env({"_target_": "python_envs.Countdown", "hang_at": 1}).env, 1, seed=0,
                      vectorization=Vectorization("sync", 0.3))
    actor = threading.Thread(target=lambda: other.step(np.zeros(1, np.int32)), daemon=True)  # hangs for an hour
    actor.start()
    time.sleep(0.1)
    assert other.overdue() == ""  # within the deadline
    time.sleep(0.4)
    assert "did not return from step within 0.3 s" in other.overdue()
    other.close()  # leaves the hung env alone, at once
    assert actor.is_alive()


@pytest.mark.cli
def test_the_ported_cutting_env_matches_the_jax_one_step_for_step():
    from maze_jax.envs.cutting_2d import make_cutting_2d
    from maze_jax.envs.make import as_env_spec

    jax_spec = make_cutting_2d("struct_masked")
    python_spec = as_env_spec(python_envs.Cutting())
    assert python_spec.env.sub_steps == jax_spec.env.sub_steps and python_spec.env.action_masks == \
        jax_spec.env.action_masks
    rng = np.random.default_rng(0)
    jax_obs, state = jax_spec.env.reset(jax.random.key(0), jax_spec.params)
    env = python_spec.env.make_one()
    obs, _ = env.reset(seed=0)
    step = jax.jit(jax_spec.env.step)
    for t in range(300):
        converted = python_spec.env.to_observation(obs, batched=False)
        for key, value in jax_obs.items():
            np.testing.assert_array_equal(converted[key], np.asarray(value), err_msg=f"{key} at sub-step {t}")
        mask = np.asarray(jax_obs["inventory_mask"])
        piece = rng.choice(np.flatnonzero(mask)) if mask.any() and rng.random() < 0.9 else rng.integers(50)
        action = {"piece_idx": int(piece), "cut_rotation": int(rng.integers(2)), "cut_order": int(rng.integers(2))}
        jax_obs, state, jax_reward, _, _, _ = step(jax.random.key(t), state,
                                                    {k: jnp.int32(v) for k, v in action.items()}, jax_spec.params)
        obs, reward, _, _, _ = env.step(action)
        assert float(jax_reward) == reward, t
    # and the structured Python env trains through the same learner, masks and sub-steps applied
    _, trainer = make_trainer(["algorithm=ppo", "runner=dev", "algorithm.epoch_length=1", "algorithm.n_rollout_steps=16",
                               "algorithm.batch_size=16", "model=tutorial_cutting_2d_struct_masked"], python_spec)
    _, metrics = trainer.train_epoch(init_state(trainer))
    assert "entropy/select_piece" in metrics and np.isfinite(
        float(metrics["value_loss/cut"]))
    for row in ("policy_loss", "grad_norm"):  # Maze's multi-step rows, per sub-step
        assert np.isfinite(float(metrics[f"{row}/select_piece"]))
        assert np.isfinite(float(metrics[f"{row}/cut"]))
    # every sub-step's heads are counted where it acts: 8 of the 16 sub-steps each, in each of the 2 envs
    pieces = np.asarray(metrics["train_DiscreteActionEvents/action/substep_0/piece_idx"])
    cuts = np.asarray(metrics["train_DiscreteActionEvents/action/substep_1/cut_rotation"])
    assert pieces.sum() == 16 and cuts.sum() == 16
    # its events and KPI reach the rows as a JAX env's do (no episode of 180 steps ended yet: NaN totals)
    assert float(metrics["train_InventoryEvents/pieces_in_inventory/step_max"]) >= 1.0
    assert float(metrics["train_CuttingEvents/valid_cut/step_mean"]) == 0.5  # every cut valid, every other call
    assert np.isnan(float(metrics["train_BaseEnvEvents/kpi/mean/raw_piece_usage_per_step"]))
    trainer.close()


@pytest.mark.skipif(not HAS_ENVPOOL, reason="envpool is an optional extra: pip install '.[envpool]'")
def test_envpool_batches_reset_at_once_and_keep_the_final_observation():
    spec = make_env("CartPole-v1", backend="envpool", max_episode_steps=3)
    assert spec.env.envpool_id == "CartPole-v1" and spec.reward_threshold == 475.0
    envs = VectorEnv(spec.env, 4, seed=0)
    before = envs.obs
    for _ in range(3):
        obs, reward, terminated, truncated, final = envs.step(np.zeros(4, np.int32))
    assert truncated.all() and (reward == 1.0).all()
    assert not np.allclose(final, obs)  # final: the episode's last observation; obs: the next episode's first
    assert np.abs(obs).max() < 0.05 and np.abs(before).max() < 0.05  # CartPole starts near 0
    obs, *_ = envs.step(np.zeros(4, np.int32))  # and the new episodes go on from there
    envs.close()


@pytest.mark.slow
def test_a_python_envs_kpis_count_at_the_end_of_its_episodes():
    from maze_jax.envs.make import as_env_spec
    spec = as_env_spec(python_envs.Cutting(max_steps=4))
    _, trainer = make_trainer(["algorithm=ppo", "runner=dev", "algorithm.epoch_length=2", "algorithm.n_rollout_steps=16",
                               "algorithm.batch_size=16", "model=tutorial_cutting_2d_struct_masked"], spec)
    _, metrics = trainer.train_epoch(init_state(trainer))
    trainer.close()
    episodes = float(metrics["train_BaseEnvEvents/reward/episode_count"])
    assert episodes == 8  # 2 envs x 32 sub-steps, 8 sub-steps an episode
    # masks make every cut valid: an episode's return is minus its raw pieces, over its 4 whole steps
    assert float(metrics["train_BaseEnvEvents/kpi/mean/raw_piece_usage_per_step"]) == pytest.approx(
        -float(metrics["train_BaseEnvEvents/reward/mean"]) / 4)
    assert float(metrics["train_CuttingEvents/valid_cut/mean_episode_total"]) == 4.0


def test_a_kpi_a_python_env_reports_only_at_its_episodes_end_is_kept():
    from maze_jax.shell.collectors.host import Episodes, event_rows

    episodes, snapshots = Episodes(2), []
    for step in range(6):  # events every step; the KPI only on the step that ends an episode (every third)
        done = np.full(2, step % 3 == 2)
        kpis = {"cost": np.array([1.0, 3.0])} if done.any() else {}
        episodes.add(np.ones(2), done, ({"E/x": np.ones(2)}, kpis))
        if step % 2 == 1:
            snapshots.append(episodes.take_events())
    rows = event_rows(snapshots)
    assert rows["train_BaseEnvEvents/kpi/mean/cost"] == pytest.approx(2.0)
    assert rows["train_BaseEnvEvents/kpi/max/cost"] == pytest.approx(3.0)
    assert rows["train_E/x/mean_episode_total"] == pytest.approx(3.0)


def test_the_actions_reach_the_envs_as_numpy_arrays_of_the_same_values():
    from maze_jax.shell.collectors.host import to_numpy

    actions = {"piece": jnp.array([2, 0], jnp.int32), "rotation": (jnp.array([[0.5], [1.5]]),)}
    on_host = to_numpy(actions)
    assert all(type(x) is np.ndarray for x in jax.tree.leaves(on_host))
    assert on_host["piece"].dtype == np.int32 and on_host["piece"].tolist() == [2, 0]
    assert on_host["rotation"][0].tolist() == [[0.5], [1.5]]
