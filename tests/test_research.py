"""The research API's doors: settings without Hydra, loss terms as parameters, evaluation inside the jitted run,
from a trained state to a policy (wrappers kept) and to a run directory, the compilation cache."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import run_cli
from maze_jax.algorithms.actor_critic import ActorCriticConfig
from maze_jax.algorithms.es import ESConfig
from maze_jax.research import make_train
from maze_jax.trained_policy import load_policy

TINY = dict(n_epochs=2, epoch_length=2, n_envs=4, n_rollout_steps=16, batch_size=32)
MLP = {"_target_": "maze_jax.models.FlattenConcatPolicy", "hidden_units": [16]}


def test_settings_dataclasses_train_without_hydra_with_an_evaluation_per_seed_and_epoch(tmp_path):
    train = make_train(ActorCriticConfig(**TINY), env="CartPole-v1", model=MLP, eval_episodes=3,
                       compilation_cache=str(tmp_path))
    _, metrics = jax.jit(jax.vmap(train))(jax.random.split(jax.random.key(0), 2))
    assert metrics["eval_BaseEnvEvents/reward/mean"].shape == (2, 2)  # (seeds, epochs)
    assert (metrics["eval_BaseEnvEvents/reward/episode_count"] == 3).all()
    assert not np.allclose(*metrics["eval_BaseEnvEvents/reward/mean"])  # one value per seed, not merged
    assert jax.config.jax_compilation_cache_dir == str(tmp_path)
    es = make_train(ESConfig(n_epochs=1, population=8), env="CartPole-v1", model=MLP, compilation_cache=None)
    _, es_metrics = jax.jit(es)(jax.random.key(0))
    assert es_metrics["policy_norm"].shape == (1,)


def test_loss_terms_are_parameters_of_the_learner():
    zero = lambda x, *args: jnp.zeros_like(x)  # noqa: E731
    frozen = make_train(ActorCriticConfig(**TINY), env="CartPole-v1", model=MLP, policy_loss=zero, entropy_loss=zero,
                        compilation_cache=None)
    state, _ = jax.jit(frozen)(jax.random.key(0))
    fresh = frozen.trainer.init(jax.random.fold_in(jax.random.key(0), 0), jax.random.fold_in(jax.random.key(0), 1))
    for a, b in zip(jax.tree.leaves(state.learner.params["policy"]), jax.tree.leaves(fresh.learner.params["policy"])):
        np.testing.assert_array_equal(a, b)  # no policy term left: only the critic learned
    assert not np.allclose(jax.tree.leaves(state.learner.params["critic"])[0],
                           jax.tree.leaves(fresh.learner.params["critic"])[0])
    with pytest.raises(ValueError, match="unknown hyperparameters"):
        frozen(jax.random.key(0), {"learning_rate": 1.0})


@pytest.mark.slow
def test_a_custom_loss_declares_traced_hyperparameters_and_reports_auxiliary_metrics():
    from maze_jax.algorithms.losses import ppo_clipped

    def kl_penalised(log_prob, old_log_prob, advantage, hparams):  # PPO plus a KL penalty of its own weight
        kl = old_log_prob - log_prob
        return ppo_clipped(log_prob, old_log_prob, advantage, hparams) + hparams.kl_coef * kl, \
            {"kl": kl, "kl_coef_seen": jnp.full_like(kl, hparams.kl_coef)}

    train = make_train(ActorCriticConfig(**TINY), env="CartPole-v1", model=MLP, policy_loss=kl_penalised,
                       loss_hyperparams={"kl_coef": 0.1}, compilation_cache=None)
    _, metrics = jax.jit(train)(jax.random.key(0))
    np.testing.assert_allclose(metrics["kl_coef_seen"], [0.1, 0.1], rtol=1e-6)  # the declared default
    assert metrics["kl"].shape == (2,) and np.isfinite(metrics["kl"]).all()
    coefs = jnp.array([0.0, 0.5, 2.0])  # vmapped like `lr`: three settings in one program
    states, swept = jax.jit(jax.vmap(train, in_axes=(None, {"kl_coef": 0})))(jax.random.key(0), {"kl_coef": coefs})
    np.testing.assert_allclose(swept["kl_coef_seen"][:, -1], coefs, rtol=1e-6)
    assert not np.allclose(*jax.tree.leaves(states.learner.params["policy"])[0][:2])  # the weight changed learning
    with pytest.raises(ValueError, match="unknown hyperparameters"):
        train(jax.random.key(0), {"kl_coeff": 1.0})
    with pytest.raises(ValueError, match=r"loss_hyperparams \['lr'\] are already hyperparameters"):
        make_train(ActorCriticConfig(**TINY), env="CartPole-v1", loss_hyperparams={"lr": 0.1}, compilation_cache=None)


def test_metrics_count_the_env_steps_since_the_start_and_discrete_actions_come_out_as_ints():
    train = make_train(ActorCriticConfig(**{**TINY, "n_epochs": 3}), env="CartPole-v1", model=MLP,
                       compilation_cache=None)
    state, metrics = jax.jit(train)(jax.random.key(0))
    np.testing.assert_array_equal(metrics["total_env_steps"], [128, 256, 384])  # 2 updates x 4 envs x 16 steps
    np.testing.assert_array_equal(metrics["total_env_steps"],
                                  np.cumsum(metrics["train_BaseEnvEvents/reward/step_count"]))
    policy = train.to_policy(state)
    action = policy.compute_action(np.zeros(4, np.float32))
    assert type(action) is int and action in (0, 1)  # what env.step takes, for gymnax and gymnasium alike
    assert policy.compute_action(np.zeros((3, 4), np.float32)).shape == (3,)
    pendulum = make_train(ActorCriticConfig(**TINY), env="Pendulum-v1", model=MLP, compilation_cache=None)
    fresh = pendulum.trainer.init(jax.random.key(0), jax.random.key(1))
    box = pendulum.to_policy(fresh).compute_action(np.zeros(3, np.float32))
    assert np.shape(box) == (1,)


@pytest.mark.slow
def test_a_trained_state_becomes_a_policy_with_its_normalisation_and_a_run_directory(tmp_path, cache_dir):
    wrappers = {"observation_normalization": {"default_strategy_config": {"axis": [0]}}}
    train = make_train(ActorCriticConfig(**TINY), env="CartPole-v1", model=MLP, wrappers=wrappers,
                       compilation_cache=cache_dir)
    state, _ = jax.jit(train)(jax.random.key(3))
    policy = train.to_policy(state)
    raw = jax.random.normal(jax.random.key(1), (32, 4)) * jnp.array([1.0, 2.0, 0.1, 1.5])
    normalized = train.env_spec.env.normalize_observation(raw)
    expected = train.algorithm.policy.act(state.learner.params["policy"], normalized, jax.random.key(0), True)
    np.testing.assert_array_equal(policy.compute_action(raw), expected)  # raw observations in, as in training
    run_dir = str(tmp_path / "research_run")
    assert train.save(state, run_dir) == run_dir
    loaded = load_policy(run_dir)
    np.testing.assert_array_equal(loaded.compute_action(raw), expected)
    proc = run_cli([f"input_dir={run_dir}", "runner.n_episodes=4", f"log_base_dir={tmp_path}"], tmp_path, cache_dir,
                   module="maze_jax.rollout")
    assert proc.returncode == 0, proc.stderr
    assert "rollout               BaseEnvEvents         reward                episode_count" in proc.stdout


def test_run_context_refuses_a_run_dir_that_holds_a_run(tmp_path, cache_dir):
    from maze_jax.api import RunContext
    from maze_jax.config import ConfigError

    (tmp_path / "old" / "checkpoints").mkdir(parents=True)
    with pytest.raises(ConfigError, match="already holds a run"):
        RunContext(env="cartpole", algorithm="ppo", run_dir=str(tmp_path / "old"), echo=lambda *a, **k: None)


def test_make_train_on_a_python_env_runs_when_called_and_says_why_not_under_jit(tmp_path):
    import python_envs  # noqa: F401  registers MazeJaxTest/Countdown-v0

    train = make_train(ActorCriticConfig(**TINY), env="MazeJaxTest/Countdown-v0", model=MLP, compilation_cache=None)
    _, metrics = train(jax.random.key(0))
    assert metrics["train_BaseEnvEvents/reward/mean"].shape == (2,)  # an entry per epoch, as under jit
    for wrapped, keys in ((jax.jit(train), jax.random.key(1)), (jax.vmap(train), jax.random.split(jax.random.key(1)))):
        with pytest.raises(TypeError, match="steps the Python env MazeJaxTest/Countdown-v0 on the host, so it runs "
                                            "outside jax.jit and jax.vmap: call it directly"):
            wrapped(keys)


def test_composing_a_config_from_python_says_what_is_wrong_in_one_line():
    from maze_jax.api import RunContext, compose_config
    from maze_jax.config import ConfigError

    with pytest.raises(ConfigError, match=r"^Could not override 'algorithm.lr': Key 'lr' is not in struct"):
        RunContext(env="cartpole", algorithm="es", overrides={"algorithm.lr": 0.1}, echo=lambda *a, **k: None)
    with pytest.raises(ConfigError, match=r"env=cartpol is not an option.*Did you mean env=cartpole\?"):
        compose_config(["env=cartpol"])


@pytest.mark.learning
def test_jit_vmap_over_seeds_of_a_hand_written_gymnax_env_finishes():
    # the script starts JAX before maze_jax can set its XLA flags; with a batched orthogonal init this run compiled,
    # then never returned (two batched LAPACK QRs deadlocked XLA's 2-thread pool; 3 hangs in 3 runs)
    import os
    import subprocess
    import sys

    script = os.path.join(os.path.dirname(__file__), "reach1d.py")
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    done = subprocess.run([sys.executable, script], capture_output=True, text=True, timeout=90, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    means = [float(x) for x in done.stdout.split("[")[-1].rstrip().rstrip("]").split()]
    assert len(means) == 2 and all(np.isfinite(means))


def test_make_train_warns_when_jax_started_before_maze_jax_set_its_flags(monkeypatch):
    from maze_jax import xla_flags

    monkeypatch.setattr(xla_flags, "_late", [])
    monkeypatch.setenv("XLA_FLAGS", "")
    monkeypatch.delenv("JAX_PLATFORMS", raising=False)
    monkeypatch.setattr(xla_flags, "runs_on_cpu", lambda: True)
    xla_flags.apply_defaults()  # this process's backend runs already: the flags come too late
    assert xla_flags.came_too_late() == xla_flags.DEFAULTS
    with pytest.warns(UserWarning, match="before `import maze_jax`"):
        make_train(ESConfig(n_epochs=1, population=8), env="CartPole-v1", compilation_cache=None)
