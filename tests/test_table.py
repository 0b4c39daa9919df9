"""The console table matches Maze's layout character for character."""

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
    assert format_value(1234.5678) == "            1234.568"
    assert format_value([1.0, 2.0, 6.0]).strip() == "[len:3, μ:3.0]"
