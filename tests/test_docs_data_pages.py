"""The ```python blocks of docs/datasets.md and docs/checkpoints.md run, in order, in a
fresh interpreter started from the repository root (as a reader would paste them)."""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys

import pytest

from fnet.datasets import find_dataset_dir

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("page", ["datasets.md", "checkpoints.md"])
def test_python_blocks_of_the_page_run_in_order(page):
    if (
        page == "datasets.md"
        and find_dataset_dir(
            "mnist", ["t10k-images-idx3-ubyte.gz"], ROOT.parent / "shared" / "data"
        )
        is None
    ):
        pytest.skip("the page loads MNIST from ../shared/data/mnist, which is absent")
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "docs" / page).read_text(), re.S)
    assert blocks
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu"}
    result = subprocess.run(
        [sys.executable, "-c", "\n".join(blocks)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
