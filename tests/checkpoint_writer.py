"""Helper for tests/test_checkpoint.py: save checkpoints in a loop until killed.

Usage: ``python tests/checkpoint_writer.py CKPT_DIR N_FLOATS KEEP``. Continues from the
latest step in CKPT_DIR. Prints ``ready`` once imported, then ``saved <step>`` after each
:func:`fnet.checkpoint.save` returns. The saved values are :func:`expected_tree` of the step,
so a test can check what any restored step must contain.
"""

from __future__ import annotations

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


def main() -> None:
    from fnet import checkpoint

    ckpt_dir, n_floats, keep = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    last = checkpoint.latest_step(ckpt_dir)
    step = 0 if last is None else last + 1
    print("ready", flush=True)
    while True:
        checkpoint.save(
            ckpt_dir, step, expected_tree(step, n_floats), extra={"step": step}, keep=keep
        )
        print(f"saved {step}", flush=True)
        step += 1


if __name__ == "__main__":
    main()
