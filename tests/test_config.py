"""Config values are type- and range-checked with messages naming the key; a resume merges by key."""

import importlib.util

import pytest

from maze_jax.config import ConfigError, read
from maze_jax.models.mlp import activation
from maze_jax.cli import merge_on_resume


@pytest.mark.parametrize("value, kind, kwargs, message", [
    ("abc", float, {}, "expected a number"),
    (1.5, int, {}, "expected an integer"),
    (-1, int, {"low": 0}, "must be >= 0"),
    (0.0, float, {"low": 0.0, "low_inclusive": False}, "must be > 0.0"),
    (3, int, {"even": True}, "must be even"),
    (True, int, {}, "expected an integer"),
    ("yes", bool, {}, "expected true or false"),
])
def test_bad_values_name_the_key(value, kind, kwargs, message):
    with pytest.raises(ConfigError, match=f"algorithm.x=.*{message}"):
        read({"x": value}, "x", kind, "algorithm", **kwargs)


def test_good_values_are_converted():
    assert read({"x": 4}, "x", float, "a") == 4.0 and isinstance(read({"x": 4}, "x", float, "a"), float)
    assert read({"x": 6.0}, "x", int, "a", even=True) == 6


def test_activation_accepts_maze_and_flax_names():
    assert activation("Tanh") is activation("torch.nn.Tanh") is activation("tanh")
    with pytest.raises(ConfigError, match="Valid: .*relu"):
        activation("Swish2")


def test_a_resume_keeps_the_saved_config_and_puts_this_commands_overrides_on_top():
    from omegaconf import OmegaConf

    saved = OmegaConf.create({"algorithm": {"lr": 0.001, "gamma": 0.9, "batch_size": 16}, "runner": {"concurrency": 4},
                              "input_dir": "g0", "seeding": {"env_base_seed": 3}})
    composed = OmegaConf.create({"algorithm": {"lr": 0.00025, "gamma": 0.98, "batch_size": 100, "n_epochs": 9},
                                 "runner": {"concurrency": 16}, "input_dir": "g1", "seeding": {"env_base_seed": None}})
    merged = merge_on_resume(saved, {"algorithm": "ppo"}, composed, ["input_dir=g1", "algorithm.n_epochs=9",
                                                                      "algorithm=ppo"])
    # the saved run's settings stay (not this composition's defaults); the command's keys and input_dir apply
    assert merged.algorithm == {"lr": 0.001, "gamma": 0.9, "batch_size": 16, "n_epochs": 9}
    assert merged.runner.concurrency == 4 and merged.input_dir == "g1" and merged.seeding.env_base_seed == 3
    assert merge_on_resume(saved, {}, composed, ["~algorithm.batch_size"]).algorithm == {"lr": 0.001, "gamma": 0.9}


def test_switching_a_group_on_resume_takes_the_new_options_section():
    from omegaconf import OmegaConf

    saved = OmegaConf.create({"algorithm": {"lr": 0.1, "batch_size": 16}, "runner": {"concurrency": 4}, "input_dir": ""})
    composed = OmegaConf.create({"algorithm": {"lr": 0.0005, "epoch_length": 3}, "runner": {"concurrency": 16},
                                 "input_dir": "x"})
    merged = merge_on_resume(saved, {"algorithm": "ppo"}, composed, ["algorithm=a2c", "algorithm.epoch_length=3"])
    assert merged.algorithm == {"lr": 0.0005, "epoch_length": 3} and merged.runner.concurrency == 4


def test_hydra_flags_keep_their_values_when_saved_choices_are_added():
    from maze_jax.train import split_flags

    argv = ["--config-dir", "conf", "input_dir=x", "-m", "algorithm.lr=1", "--config-name=conf_train"]
    assert split_flags(argv) == (["--config-dir", "conf", "-m", "--config-name=conf_train"],
                                 ["input_dir=x", "algorithm.lr=1"])


# Fields an algorithm's settings take from another group than `algorithm` (or from no config key at all).
NOT_FROM_ALGORITHM_GROUP = {"ppo", "n_envs", "mesh", "n_eval_episodes"}


@pytest.mark.parametrize("name", ["es", "ppo", "a2c", "sac", "impala"])
def test_yaml_defaults_are_the_dataclass_defaults(name):
    """`algorithm=NAME` on the command line and the bare settings class in research code train alike: every
    setting the algorithm group sets equals the dataclass's default (A2C's learning rate once did not)."""
    from dataclasses import fields

    from maze_jax.algorithms.actor_critic import ActorCriticConfig
    from maze_jax.algorithms.es import ESConfig
    from maze_jax.algorithms.impala import ImpalaConfig
    from maze_jax.algorithms.sac import SACConfig
    from maze_jax.shell.settings import compose_config, read_settings

    composed = read_settings(compose_config([f"algorithm={name}"])[0]).algorithm
    bare = {"es": ESConfig, "sac": SACConfig, "impala": ImpalaConfig}.get(name, lambda: ActorCriticConfig(
        ppo=name == "ppo"))()
    differ = {f.name: (getattr(composed, f.name), getattr(bare, f.name)) for f in fields(bare)
              if f.name not in NOT_FROM_ALGORITHM_GROUP and getattr(composed, f.name) != getattr(bare, f.name)}
    assert not differ, f"conf/algorithm/{name}.yaml vs the dataclass: {differ}"
    if name != "es":
        assert bare.name == name


@pytest.mark.parametrize("name", ["es", "ppo", "a2c", "sac", "impala"])
def test_every_key_of_an_algorithm_group_is_read_and_an_added_one_is_refused(name):
    """A key added with `+algorithm.<key>=...` that no reader reads would change nothing, silently: it is one
    line, with the closest setting. Each group's own keys are all read (none is refused)."""
    from maze_jax.shell.settings import compose_config, read_settings

    read_settings(compose_config([f"algorithm={name}"])[0])
    if importlib.util.find_spec("ray") is not None:  # Ray's workers replace num_actors and actors_batch_size
        read_settings(compose_config([f"algorithm={name}", "runner=ray", "env=gymnasium"])[0])
    with pytest.raises(ConfigError, match=rf"^algorithm.rollout_evaluator.n_episode is not a setting of "
                                          rf"algorithm={name}. Did you mean algorithm.rollout_evaluator.n_episodes"
                       if name != "es" else r"^algorithm.rollout_evaluator.n_episode is not a setting of algorithm=es"):
        read_settings(compose_config([f"algorithm={name}", "+algorithm.rollout_evaluator.n_episode=3"])[0])
    with pytest.raises(ConfigError, match=r"^Could not override 'algorithm.lr_': Key 'lr_' is not in struct"
                                          r"(. Did you mean algorithm.lr\?)?$"):  # without "+": no advice to add it
        compose_config([f"algorithm={name}", "algorithm.lr_=3"])


@pytest.mark.parametrize("name, key", [("es", "optimizer.step_size"), ("ppo", "lr"), ("sac", "lr"), ("impala", "lr")])
def test_a_learning_rate_by_another_libraries_name_points_to_the_algorithms_own(name, key):
    """ES's learning rate is `optimizer.step_size`, the others' `lr`: `lr` and `learning_rate` lead there, with
    or without "+", and so does a nested key given without its section."""
    from maze_jax.shell.settings import compose_config, read_settings

    with pytest.raises(ConfigError, match=rf"Key 'learning_rate' is not in struct. Did you mean algorithm.{key}\?$"):
        compose_config([f"algorithm={name}", "algorithm.learning_rate=0.1"])
    with pytest.raises(ConfigError, match=rf"^algorithm.learning_rate is not a setting of algorithm={name}. Did you "
                                          rf"mean algorithm.{key}\?$"):
        read_settings(compose_config([f"algorithm={name}", "+algorithm.learning_rate=0.1"])[0])
    if name == "es":
        with pytest.raises(ConfigError, match=r"Key 'lr' is not in struct. Did you mean algorithm.optimizer.step_size"):
            compose_config(["algorithm=es", "algorithm.lr=0.1"])
    else:
        with pytest.raises(ConfigError, match=r"Key 'n_episodes' is not in struct. Did you mean "
                                              r"algorithm.rollout_evaluator.n_episodes\?$"):
            compose_config([f"algorithm={name}", "algorithm.n_episodes=3"])


@pytest.mark.parametrize("runner", ["local", "dev", "distributed", "ray"])
def test_a_key_added_to_the_runner_or_seeding_is_refused_and_only_groups_that_take_new_keys_advise_adding(runner):
    from maze_jax.shell.settings import compose_config, read_settings

    cfg, _ = compose_config([f"runner={runner}", "+runner.concurrenci=3"])
    with pytest.raises(ConfigError, match=r"^runner.concurrenci is not a setting of runner. Did you mean "
                                          r"runner.concurrency\?$"):
        read_settings(cfg)
    with pytest.raises(ConfigError, match=r"^seeding.env_seed is not a setting of seeding. Did you mean "
                                          r"seeding.env_base_seed\?$"):
        read_settings(compose_config(["+seeding.env_seed=3"])[0])
    with pytest.raises(ConfigError, match=r"Key 'n_seed' is not in struct. Did you mean runner.n_seeds\?$"):
        compose_config([f"runner={runner}", "runner.n_seed=3"])
    with pytest.raises(ConfigError, match=r"\(\+env.max_steps=... adds a new key\)$"):  # an env's constructor argument
        compose_config(["env.max_steps=3"])


def test_a_run_saved_before_the_readers_moved_still_reads():
    """Run directories written before the border moved to maze_jax/shell/ name `maze_jax.settings.ppo`."""
    from maze_jax.shell.settings import compose_config, read_settings

    cfg, _ = compose_config(["algorithm=ppo"])
    cfg.algorithm._target_ = "maze_jax.settings.ppo"
    assert read_settings(cfg).algorithm.name == "ppo"


def test_each_hyperparameter_is_declared_once_in_the_settings_marked_traced():
    """The traced struct comes from the settings' `traced` fields: a settings class of one's own gets one too,
    and `vmap` maps over its values while the static fields shape the program."""
    from dataclasses import dataclass

    import jax
    import jax.numpy as jnp

    from maze_jax.algorithms import hyperparams_struct, traced

    @dataclass(frozen=True)
    class Mine:
        width: int = 8
        kl_coef: float = traced(0.5)
        lr: float = traced(0.1)

    MineHyperparams = hyperparams_struct(Mine, "MineHyperparams")
    assert MineHyperparams.names() == ("kl_coef", "lr")
    h = MineHyperparams.of(Mine(lr=0.3))
    assert float(h.lr) == jnp.float32(0.3) and float(h.kl_coef) == 0.5
    doubled = jax.vmap(lambda p: p.lr * 2)(MineHyperparams(jnp.array([1.0, 2.0]), jnp.array([3.0, 4.0])))
    assert doubled.tolist() == [6.0, 8.0]
    from maze_jax.algorithms.actor_critic import ACHyperparams, ActorCriticConfig
    from maze_jax.algorithms.es import ESHyperparams

    assert ACHyperparams.names() == ("lr", "gamma", "gae_lambda", "policy_loss_coef", "value_loss_coef",
                                     "entropy_coef", "max_grad_norm", "clip_range", "critic_burn_in_epochs")
    assert ESHyperparams.names() == ("step_size", "noise_stddev", "l2_penalty")
    assert "n_envs" not in ACHyperparams.names() and float(ActorCriticConfig(gamma=0.5).hyperparams().gamma) == 0.5
