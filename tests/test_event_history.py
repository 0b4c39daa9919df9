"""A resumed run's TensorBoard history, read from its parent's event files."""

from maze_jax.shell.event_history import scalar_history


def test_the_parents_scalars_up_to_the_resumed_epoch_are_read_back_and_broken_files_are_data(tmp_path):
    from tensorboardX import SummaryWriter

    writer = SummaryWriter(str(tmp_path))
    for step in (1, 2, 3, 4):
        writer.add_scalar("eval_BaseEnvEvents/reward/mean", 10.0 * step, step, walltime=1000.0 + step)
        writer.add_scalar("train_TimeEvents/epoch_time", 0.5, step)
    writer.add_scalar("eval_BaseEnvEvents/reward/mean", 25.0, 2, walltime=2000.0)  # written again: the last counts
    writer.add_scalar("final_BaseEnvEvents/reward/mean", 99.0, 2)  # a final evaluation: not the resumed run's past
    writer.add_text("hydra_config", "text is not a scalar")
    writer.close()
    (tmp_path / "events.out.tfevents.0.broken").write_bytes(b"\x05\x00\x00\x00\x00\x00\x00\x00abcdgarbage!")
    (tmp_path / "events.out.tfevents.1.cut").write_bytes(b"\xff" * 40)  # a length longer than the file
    history = scalar_history(str(tmp_path), up_to_step=2)
    assert history == [("eval_BaseEnvEvents/reward/mean", 10.0, 1, 1001.0), ("train_TimeEvents/epoch_time", 0.5, 1,
                                                                               history[1][3]),
                       ("eval_BaseEnvEvents/reward/mean", 25.0, 2, 2000.0), ("train_TimeEvents/epoch_time", 0.5, 2,
                                                                               history[3][3])]
    assert scalar_history(str(tmp_path / "absent"), 10) == []
