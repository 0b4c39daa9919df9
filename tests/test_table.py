"""The console table matches Maze's layout character for character."""

import pytest

from maze_jax.shell.table import format_table, format_value, tag_parts


def test_rows_match_mazes_format():
    table = format_table(3, 4, {"eval_BaseEnvEvents/reward/mean_step_count": 28.1,
                                "eval_BaseEnvEvents/reward/mean": 28.1})
    assert table.splitlines() == [
        "********** Iteration 3 **********",
        " step|path                                                                                    |               value",
        "=====|========================================================================================|====================",
        "    4|eval                  BaseEnvEvents         reward                mean_step_count       |              28.100",
        "    4|eval                  BaseEnvEvents         reward                mean                  |              28.100",
    ]


def test_tags_split_into_four_parts_and_long_parts_are_cut():
    assert tag_parts("train_ESEvents/policy_grad_norm") == ["train", "ESEvents", "policy_grad_norm", ""]
    row = format_table(0, 1, {"train_G/" + "x" * 30 + "/s": 1.0}).splitlines()[-1]
    assert row.split("|")[1] == "train".ljust(22) + "G".ljust(22) + "x" * 22 + "s".ljust(22)


def test_values_scalars_and_lists():
    assert format_value(1234.5678) == "           1,234.568"
    assert format_value([1.0, 2.0, 6.0]).strip() == "[len:3, μ:3.0]"
    # steps per second read alike at any speed: whole, with separators (the compact line's and progress line's way)
    tag = "train_TimeEvents/steps_per_second"
    assert [format_value(v, tag).strip() for v in (406030.015, 2345678.9, 812.4)] == ["406,030", "2,345,679", "812"]


def test_small_values_keep_their_significant_digits_and_large_ones_stay_readable():
    from maze_jax.shell.table import format_number

    assert format_number(0.00025) == "0.00025"  # a learning rate, not 0.000
    assert format_number(-3.14159e-6) == "-3.14e-06"
    assert format_number(0.0123) == "0.012" and format_number(0.0099) == "0.0099"
    assert format_number(475.0) == "475.000" and format_number(0) == "0.000"
    assert format_number(12345678) == "12,345,678" and format_number(2.5e16) == "2.5000e+16"
    assert format_number(461869.1514) == "461,869.151" and format_number(1234.5) == "1,234.500"
    assert format_number(float("nan")) == "nan" and format_number(float("-inf")) == "-inf"
    assert all(len(format_value(v)) == 20 for v in (0.00025, 12345678, 2.5e16, -1e-30))


def test_deep_tags_keep_the_rest_of_their_path_in_the_last_part():
    from maze_jax.shell.table import ActionSummary

    tag = "train_DiscreteActionEvents/action/substep_0/piece_idx"
    assert tag_parts(tag) == ["train", "DiscreteActionEvents", "action", "substep_0/piece_idx"]
    row = format_table(0, 1, {tag: ActionSummary(4000, 54.83)}).splitlines()[-1]
    assert row.endswith("substep_0/piece_idx".ljust(22) + "|" + "[len:4000, μ:54.8]".rjust(20))


def test_the_learning_curve_draws_train_and_eval_bands_against_steps(tmp_path):
    import types

    from PIL import Image

    from maze_jax.shell.pictures import LearningCurve, steps_label

    curve = LearningCurve(str(tmp_path), title="CartPole-v1 | ppo | run", threshold=475.0)
    progress = types.SimpleNamespace(total_step_count=0, epoch=0, best_epoch=-1, best_score=float("-inf"))
    loop = types.SimpleNamespace(progress=progress)
    for epoch, score in zip(range(1, 4), (10.0, 30.0, 20.0)):
        progress.total_step_count, progress.epoch = 1000 * epoch, epoch
        if score > progress.best_score:  # as the loop's model selection sets them
            progress.best_score, progress.best_epoch = score, epoch
        rows = {f"{p}_BaseEnvEvents/reward/{s}": score + d for p in ("train", "eval")
                for s, d in (("mean", 0), ("min", -5), ("max", 5))}
        curve.on_epoch(loop, rows)
    curve.on_end(loop, "")
    assert [row[0] for row in curve.points["eval"]] == [1000, 2000, 3000]
    assert curve.best == (2000, 30.0)  # the star: where the best model was kept
    assert [steps_label(s) for s in (950, 250_000, 1_200_000, 3e9)] == ["950", "250k", "1.2M", "3G"]
    with Image.open(tmp_path / "learning_curve.png") as image:
        colours = image.convert("RGB").getcolors(maxcolors=1 << 20)
        assert image.format == "PNG" and len(colours) > 10  # lines, bands, axes: not blank
    assert not (tmp_path / "learning_curve.png.partial").exists()


def test_the_learning_curve_is_drawn_at_the_end_only_when_the_last_drawing_lacks_something(tmp_path):
    import types

    from maze_jax.shell.pictures import LearningCurve

    def run(tmp, epochs: int, min_interval_s: float) -> list:
        tmp.mkdir()
        curve = LearningCurve(str(tmp), min_interval_s=min_interval_s)
        drawn = []
        curve.draw = lambda points, best=None: drawn.append(({k: len(v) for k, v in points.items()}, best))
        progress = types.SimpleNamespace(total_step_count=0, epoch=0, best_epoch=-1, best_score=float("-inf"))
        loop = types.SimpleNamespace(progress=progress)
        for epoch in range(1, epochs + 1):
            progress.total_step_count, progress.epoch = 100 * epoch, epoch
            progress.best_score, progress.best_epoch = float(epoch), epoch
            rows = {f"eval_BaseEnvEvents/reward/{s}": float(epoch) for s in ("mean", "min", "max")}
            curve.on_epoch(loop, rows)
        curve.on_end(loop, "")
        return drawn

    # a run that stops after its first epoch: that epoch's drawing shows everything, so the end draws nothing more
    assert run(tmp_path / "a", 1, 2.0) == [({"train": 0, "eval": 1}, (100, 1.0))]
    # the second epoch came within the interval: the end draws it, with its best model
    assert run(tmp_path / "b", 2, 60.0) == [({"train": 0, "eval": 1}, (100, 1.0)),
                                            ({"train": 0, "eval": 2}, (200, 2.0))]


def test_rows_over_seeds_are_what_their_names_say():
    import numpy as np

    from maze_jax.shell.table_rows import across_seeds, seed_rows

    from maze_jax.algorithms.metrics import episode_table

    rng = np.random.default_rng(0)
    returns = [rng.normal(10 * s, 1 + s, size=n) for s, n in enumerate((5, 9, 2))]  # seeds with 5, 9, 2 episodes
    width = max(len(r) for r in returns)
    padded = np.array([np.pad(r, (0, width - len(r))) for r in returns])
    ended = np.array([np.arange(width) < len(r) for r in returns])
    per_seed = episode_table(padded, np.ones_like(padded), "eval", per_seed=True, ended=ended)
    rows = across_seeds(per_seed)
    everything = np.concatenate(returns)
    tag = "eval_BaseEnvEvents/reward/"
    assert rows[tag + "episode_count"] == 16  # a count, not a mean of counts
    assert rows[tag + "min"] == everything.min() and rows[tag + "max"] == everything.max()
    assert rows[tag + "mean"] == pytest.approx(everything.mean()) and rows[tag + "std"] == pytest.approx(everything.std())
    assert rows[tag + "mean_seed_min"] == pytest.approx(returns[0].mean())
    assert seed_rows(per_seed, ["seed_0", "seed_1", "seed_2"])[f"seed_2/{tag}max"] == returns[2].max()


def test_the_progress_line_says_steps_rate_epoch_best_and_eta():
    import io
    import types

    from maze_jax.shell.progress import ProgressLine, duration

    assert [duration(s) for s in (42, 185, 7620)] == ["42s", "3m05s", "2h07m"]
    plain = io.StringIO()
    line = ProgressLine(n_epochs=10, start_epoch=0, stream=plain, interactive=False)
    progress = types.SimpleNamespace(epoch=0, total_step_count=0, best_score=float("-inf"))
    printed = []
    line.during_epoch(progress, 7.0, lambda text, **kw: printed.append(text))
    assert printed == ["... epoch 0/10 | 0 steps | epoch 0 running for 7s"]
    line.during_epoch(progress, 7.0, lambda text, **kw: printed.append(text), 12288)  # a Python env's epoch so far
    assert printed[1] == "... epoch 0/10 | 0 steps | epoch 0 running for 7s, 12,288 env steps so far"
    progress.epoch, progress.total_step_count, progress.best_score = 2, 1234567, 123.45
    line.on_epoch(types.SimpleNamespace(progress=progress), {"train_TimeEvents/steps_per_second": 45678.0})
    status = line.status(progress)
    assert status.startswith("epoch 2/10 | 1,234,567 steps | 45,678 steps/s | best 123.5 | ETA ")
    assert "ETA at most" not in status
    # a reward threshold or patience may stop the run before its last epoch: the ETA says it is a bound
    bounded = ProgressLine(n_epochs=10, start_epoch=0, stream=plain, interactive=False, may_stop_early=True)
    bounded.on_epoch(types.SimpleNamespace(progress=progress), {"train_TimeEvents/steps_per_second": 45678.0})
    assert " | ETA at most " in bounded.status(progress)
    assert ProgressLine(0, 0, io.StringIO(), interactive=False).status(progress).count("ETA") == 0  # until stopped


def test_on_a_terminal_the_live_line_moves_out_of_the_way_of_printed_lines():
    import io
    import types

    from maze_jax.shell.progress import ProgressLine

    terminal = io.StringIO()
    line = ProgressLine(n_epochs=5, start_epoch=0, stream=terminal, interactive=True)
    progress = types.SimpleNamespace(epoch=1, total_step_count=100, best_score=1.0)
    out = io.StringIO()
    line.wrap(lambda text, **kw: out.write(text + "\n"))("a table")
    line.on_epoch(types.SimpleNamespace(progress=progress), {})
    assert out.getvalue() == "a table\n" and "1/5" in terminal.getvalue() and "100 steps" in terminal.getvalue()
    line.on_end(None, "")
    assert line.bar is None


def test_the_learners_plain_metric_names_become_mazes_tags_in_the_shell():
    from maze_jax.shell.maze_tags import maze_tags

    plain = {"policy_loss": 1.0, "value_loss/cut": 2.0, "train_BaseEnvEvents/reward/mean": 3.0, "check/x": 0,
             "train_DiscreteActionEvents/action/substep_0/action": 4}
    assert maze_tags(plain, "ppo") == {"train_PolicyEvents/policy_loss": 1.0, "train_CriticEvents/value_loss/cut": 2.0,
                                       "train_BaseEnvEvents/reward/mean": 3.0, "check/x": 0,
                                       "train_DiscreteActionEvents/action/substep_0/action": 4}
    assert list(maze_tags({"importance_weight": 1.0}, "impala")) == ["train_ImpalaEvents/importance_weight"]
    assert list(maze_tags({"entropy_coef": 1.0}, "sac")) == ["train_SACEvents/entropy_coef"]
    assert list(maze_tags({"td_loss": 1.0}, "one_step_q")) == ["train_OneStepQEvents/td_loss"]


def test_the_model_summary_lists_policy_and_critic_and_the_drawing_names_the_nonlinearity(tmp_path, monkeypatch):
    import numpy as np

    from maze_jax.shell.pictures import draw_networks
    from maze_jax.shell.session import save_model_summary

    dense = lambda i, o: {"Dense_0": {"kernel": np.zeros((i, 8)), "bias": np.zeros(8)},  # noqa: E731
                          "Dense_1": {"kernel": np.zeros((8, o)), "bias": np.zeros(o)}}
    networks = {"policy": {"params": dense(4, 2)}, "critic": {"params": dense(4, 1)}}
    save_model_summary(str(tmp_path), networks)
    summary = (tmp_path / "model_summary.txt").read_text().splitlines()
    assert summary[0] == "policy:" and "critic:" in summary
    assert "  policy parameters: 58" in summary and "  critic parameters: 49" in summary
    assert summary[-1] == "total parameters: 107"
    texts = []
    from matplotlib.axes import Axes

    original = Axes.text

    def recording(self, x, y, s, *args, **kwargs):
        texts.append(s)
        return original(self, x, y, s, *args, **kwargs)

    monkeypatch.setattr(Axes, "text", recording)
    draw_networks(str(tmp_path / "networks.png"), networks, {"observation": (4,)}, (), "actions: Categorical(2)",
                  "Tanh")
    assert texts.count("Tanh") == 2 and (tmp_path / "networks.png").stat().st_size > 0  # between hidden layers


def test_a_resumed_runs_curve_goes_on_from_its_parents_up_to_the_epoch_it_resumed(tmp_path):
    import types

    from maze_jax.shell.pictures import LearningCurve, curve_history

    parent, child = tmp_path / "parent", tmp_path / "child"
    parent.mkdir()
    child.mkdir()
    first = LearningCurve(str(parent))
    progress = types.SimpleNamespace(total_step_count=0, epoch=0, best_epoch=-1, best_score=float("-inf"))
    loop = types.SimpleNamespace(progress=progress)
    for epoch in (1, 2, 3):  # the parent logged 3 epochs, its checkpoint holds 2 (killed after the third)
        progress.total_step_count, progress.epoch = 100 * epoch, epoch
        first.on_epoch(loop, {"eval_BaseEnvEvents/reward/mean": float(epoch), "eval_BaseEnvEvents/reward/min": 0.0,
                              "eval_BaseEnvEvents/reward/max": 9.0})
    first.on_end(loop, "")
    history = curve_history(str(parent), up_to_epoch=2)
    assert [row[:3] for row in history] == [(1, 100, "eval"), (2, 200, "eval")]
    resumed = LearningCurve(str(child), history=history)
    progress.total_step_count, progress.epoch = 300, 3
    resumed.on_epoch(loop, {"eval_BaseEnvEvents/reward/mean": 7.0, "eval_BaseEnvEvents/reward/min": 0.0,
                            "eval_BaseEnvEvents/reward/max": 9.0})
    resumed.on_end(loop, "")
    assert [p[:2] for p in resumed.points["eval"]] == [(100, 1.0), (200, 2.0), (300, 7.0)]
    assert curve_history(str(child), 10)[-1][:4] == (3, 300, "eval", 7.0)
    assert curve_history(str(tmp_path / "none"), 10) == []


def test_an_epochs_rows_keep_mazes_order():
    import numpy as np

    from maze_jax.shell.table_rows import epoch_rows

    reward = "train_BaseEnvEvents/reward/"
    metrics = {"train_ESEvents/policy_grad_norm": np.float32(1.0), **{reward + s: np.float32(1.0) for s in sorted(
        ("mean", "std", "min", "max", "mean_step_count", "median_step_count", "episode_count"))},
        "train_ESEvents/update_ratio": np.float32(0.1), "eval_BaseEnvEvents/reward/mean": np.float32(3.0),
        reward + "step_count": np.int32(100)}
    rows = epoch_rows(metrics, total_steps=100, total_episodes=9, seconds=0.5, eval_totals=(700, 30))
    assert list(rows) == [reward + s for s in ("mean", "std", "min", "max", "mean_step_count", "median_step_count",
                                               "episode_count", "total_step_count", "total_episode_count")] + [
        "train_ESEvents/policy_grad_norm", "train_ESEvents/update_ratio", "train_TimeEvents/epoch_time",
        "train_TimeEvents/steps_per_second",
        "eval_BaseEnvEvents/reward/mean", "eval_BaseEnvEvents/reward/total_step_count",
        "eval_BaseEnvEvents/reward/total_episode_count"]
    assert rows["eval_BaseEnvEvents/reward/total_step_count"] == 700
    assert rows["eval_BaseEnvEvents/reward/total_episode_count"] == 30


def test_a_final_evaluation_under_the_threshold_that_training_reached_is_noted():
    from maze_jax.shell.session import short_of_threshold_note

    final = {"final_BaseEnvEvents/reward/mean": 144.468}
    assert short_of_threshold_note(final, 200.0, 200.228, 32, "ppo") == (
        "Note: the final evaluation's mean 144.468 is under the reward threshold 200 that an evaluation of 32 episodes "
        "reached during training; more evaluation episodes per epoch (algorithm.rollout_evaluator.n_episodes) make "
        "that stop surer")
    assert "(runner.n_eval_rollouts)" in short_of_threshold_note(final, 200.0, 210.0, 16, "es")
    assert short_of_threshold_note({"final_BaseEnvEvents/reward/mean": 201.0}, 200.0, 210.0, 32, "ppo") == ""
    assert short_of_threshold_note(final, 200.0, 150.0, 32, "ppo") == ""  # training never reached it
    assert short_of_threshold_note(final, None, 210.0, 32, "ppo") == ""  # no threshold
