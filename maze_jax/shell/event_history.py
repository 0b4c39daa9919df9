"""A resumed run's TensorBoard history: the scalars its parent run wrote up to the epoch the resume starts from,
read from the parent's event files, so that the resumed run's folder holds one continuing curve per tag (Maze users
resume crashed runs and want one curve, not two runs to piece together).

Event files are TFRecord files (per record: an 8-byte little-endian length, its 4-byte CRC, the data, its 4-byte
CRC) of `Event` protobufs. A run directory is data: a record that does not parse ends the reading of its file, and
nothing in it runs."""

from __future__ import annotations

import glob
import os
import struct

from google.protobuf.message import DecodeError


def events(path: str):
    """The `Event`s of one event file, in order, up to its first record that cannot be read."""
    from tensorboardX.proto import event_pb2

    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            while len(header := f.read(12)) == 12:
                (length,) = struct.unpack("<Q", header[:8])
                if length > size - f.tell() - 4:  # cut short, or not a length at all
                    return
                data = f.read(length)
                f.read(4)
                yield event_pb2.Event.FromString(data)
    except (OSError, DecodeError):
        return


def scalar_history(run_dir: str, up_to_step: int, skip_prefix: str = "final_") -> list[tuple[str, float, int, float]]:
    """(tag, value, step, wall time) of every scalar the event files in `run_dir` hold at steps up to `up_to_step`
    (epochs: the parent's epochs after the checkpoint a resume starts from are not the resumed run's past), the last
    one written where a tag repeats a step, in step order; tags starting with `skip_prefix` (the final evaluation)
    are left out. [] when there are none."""
    latest: dict[tuple[str, int], tuple[float, float]] = {}
    for path in sorted(glob.glob(os.path.join(run_dir, "events.out.tfevents.*"))):
        for event in events(path):
            if event.step > up_to_step or not event.HasField("summary"):
                continue
            for value in event.summary.value:
                if value.WhichOneof("value") == "simple_value" and not value.tag.startswith(skip_prefix):
                    latest[(value.tag, event.step)] = (value.simple_value, event.wall_time)
    return sorted(((tag, v, step, wall) for (tag, step), (v, wall) in latest.items()), key=lambda r: (r[2], r[0]))
