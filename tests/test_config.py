"""Config values are type- and range-checked with messages naming the key; resume overrides merge by key."""

import pytest

from maze_jax.config import ConfigError, read
from maze_jax.models.mlp import activation
from maze_jax.train import merge_overrides


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


def test_resume_overrides_replace_saved_ones_by_key():
    saved = ["env=cartpole", "algorithm.n_epochs=5", "input_dir=old"]
    merged = merge_overrides(saved, ["algorithm.n_epochs=9", "input_dir=new", "+x=1"])
    assert merged == ["env=cartpole", "algorithm.n_epochs=9", "input_dir=new", "+x=1"]


def test_switching_a_group_on_resume_drops_the_old_options_keys():
    saved = ["algorithm=ppo", "algorithm.batch_size=16", "runner.concurrency=4", "algorithm.lr=0.1"]
    assert merge_overrides(saved, ["algorithm=a2c"]) == ["algorithm=a2c", "runner.concurrency=4"]
    assert merge_overrides(saved, ["algorithm=ppo"]) == saved  # same option: keys stay
    # a run that took the default group option records it only among Hydra's choices
    assert merge_overrides(["algorithm.max_steps=9"], ["algorithm=ppo"], {"algorithm": "es"}) == ["algorithm=ppo"]
    assert merge_overrides(["algorithm.max_steps=9"], ["algorithm=es"], {"algorithm": "es"}) == \
        ["algorithm.max_steps=9", "algorithm=es"]


def test_hydra_flags_keep_their_values_when_saved_choices_are_added():
    from maze_jax.train import split_flags

    argv = ["--config-dir", "conf", "input_dir=x", "-m", "algorithm.lr=1", "--config-name=conf_train"]
    assert split_flags(argv) == (["--config-dir", "conf", "-m", "--config-name=conf_train"],
                                 ["input_dir=x", "algorithm.lr=1"])
