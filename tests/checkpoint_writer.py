"""Helper for tests/test_checkpoint.py: writer processes that save checkpoints until killed.

Usage: ``python tests/checkpoint_writer.py CKPT_DIR N_FLOATS KEEP``. Imports fnet once
(seconds of CPU), then for each line ``go`` on stdin forks a writer: a new process that
prints ``ready <pid>``, continues from the latest step in CKPT_DIR and prints
``saved <step>`` after each :func:`fnet.checkpoint.save` returns, until it is killed.
When the writer has died this process prints ``died <exit status>`` (``-9``: SIGKILL)
and waits for the next ``go``; it exits at the end of stdin. The saved values are
:func:`expected_tree` of the step, so a test can check what any restored step must contain.
"""

from __future__ import annotations

import os
import sys

import numpy as np


def expected_tree(step: int, n_floats: int) -> dict[str, np.ndarray]:
    """The tree saved at ``step``: ``w`` float64 ``(n_floats,)``, ``b`` int32 ``(3, 4)``,
    ``step`` int64 scalar; every value depends on ``step``."""
    return {
        "w": np.arange(n_floats, dtype=np.float64) * 0.5 + step,
        "b": np.full((3, 4), step, dtype=np.int32),
        "step": np.asarray(step, dtype=np.int64),
    }


def write_until_killed(ckpt_dir: str, n_floats: int, keep: int) -> None:
    """The writer: save steps ``latest + 1, latest + 2, ...`` until killed."""
    from fnet import checkpoint

    last = checkpoint.latest_step(ckpt_dir)
    step = 0 if last is None else last + 1
    print(f"ready {os.getpid()}", flush=True)
    while True:
        checkpoint.save(
            ckpt_dir, step, expected_tree(step, n_floats), extra={"step": step}, keep=keep
        )
        print(f"saved {step}", flush=True)
        step += 1


def main() -> None:
    import fnet.checkpoint  # noqa: F401  (once, before any fork)

    ckpt_dir, n_floats, keep = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    for line in sys.stdin:
        assert line.strip() == "go", line
        pid = os.fork()
        if pid == 0:
            try:
                write_until_killed(ckpt_dir, n_floats, keep)
            finally:
                os._exit(1)  # only an error gets here
        _, status = os.waitpid(pid, 0)
        print(f"died {os.waitstatus_to_exitcode(status)}", flush=True)


if __name__ == "__main__":
    main()
