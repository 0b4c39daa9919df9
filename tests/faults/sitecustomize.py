"""Test-only faults in a training process, switched on by its environment (the tests put this folder first on
PYTHONPATH, so Python imports this module at start-up):

- MAZE_JAX_TEST_SLOW_COMMIT=<seconds>: every checkpoint prints "committing checkpoint" and pauses that long after
  it is written and before Orbax renames it into place, so that a test can kill the process mid-save.
- MAZE_JAX_TEST_FAIL_COMMIT=<n>: the n-th checkpoint commit of the process fails as a full disk would (ENOSPC).
"""

import os

if os.environ.get("MAZE_JAX_TEST_SLOW_COMMIT") or os.environ.get("MAZE_JAX_TEST_FAIL_COMMIT"):
    import asyncio
    import errno
    import sys

    from orbax.checkpoint._src.path import atomicity

    _finalize = atomicity.AtomicRenameTemporaryPath.finalize
    _commits = [0]

    async def finalize(self, *args, **kwargs):
        _commits[0] += 1
        if _commits[0] == int(os.environ.get("MAZE_JAX_TEST_FAIL_COMMIT", "0")):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self._final_path))
        if os.environ.get("MAZE_JAX_TEST_SLOW_COMMIT"):
            print("committing checkpoint", file=sys.stdout, flush=True)
            await asyncio.sleep(float(os.environ["MAZE_JAX_TEST_SLOW_COMMIT"]))
        return await _finalize(self, *args, **kwargs)

    atomicity.AtomicRenameTemporaryPath.finalize = finalize
