"""Documentation that cannot drift: docstrings everywhere, a current API page, a README
example that runs."""

from __future__ import annotations

import inspect
import os
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import gen_api  # noqa: E402


def _public_callables():
    import importlib

    for mod_name in gen_api.MODULES:
        module = importlib.import_module(mod_name)
        for name in gen_api.public_names(module):
            obj = getattr(module, name, None)
            if inspect.isfunction(obj) or inspect.isclass(obj):
                yield f"{mod_name}.{name}", obj


def test_every_public_function_and_class_has_a_docstring():
    missing = [name for name, obj in _public_callables() if not inspect.getdoc(obj)]
    assert not missing, f"public names without a docstring: {missing}"


def test_api_reference_is_up_to_date(capsys):
    # In this process (fnet is imported already): `python tools/gen_api.py --check`.
    assert gen_api.main(["--check"]) == 0, capsys.readouterr().err


# Every page whose ```python blocks must run when pasted, in order, into a fresh
# interpreter. docs/api.md is generated from docstrings and holds signatures only (no
# python blocks; test_api_reference_has_no_python_blocks keeps it so).
DOCS_PAGES = sorted(f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md") if p.name != "api.md")
RUNNABLE_PAGES = ["README.md", *DOCS_PAGES]
PAGE_BUDGET_S = 240  # generous for a loaded 2-core CI machine; each page takes seconds
SHARED = ROOT.parent / "shared"


def python_blocks(text: str) -> list[str]:
    """The contents of the page's ```python fences, in order."""
    return re.findall(r"^```python\n(.*?)^```", text, re.S | re.M)


def test_api_reference_has_no_python_blocks():
    assert python_blocks((ROOT / "docs" / "api.md").read_text()) == []


@pytest.mark.parametrize("page", RUNNABLE_PAGES)
def test_page_python_blocks_run_when_pasted_in_order(page, tmp_path):
    """Each page's blocks, joined, run in a fresh interpreter from a scratch directory.

    The scratch directory sits beside a link to ../shared (so the pages' documented
    ``data_dir="../shared/data/mnist"`` works), and files the page writes stay there.
    Compiled with XLA's backend optimisation off: the pages are compile-bound.
    """
    blocks = python_blocks((ROOT / page).read_text())
    if not blocks:
        return  # nothing to run (prose-only page)
    code = "\n".join(blocks)
    if "shared/data/mnist" in code and not (SHARED / "data" / "mnist").is_dir():
        pytest.skip(f"{page} reads MNIST from ../shared/data/mnist, which is absent")
    work = tmp_path / "work"
    work.mkdir()
    if SHARED.is_dir():
        (tmp_path / "shared").symlink_to(SHARED, target_is_directory=True)
    script = work / "page.py"
    script.write_text(code)
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "XLA_FLAGS": "--xla_backend_optimization_level=0",
        "MPLBACKEND": "Agg",
    }
    result = subprocess.run(
        [sys.executable, str(script)],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=PAGE_BUDGET_S,
    )
    assert result.returncode == 0, f"{page}: its python blocks fail:\n{result.stderr[-3000:]}"
    if page == "README.md":  # the first example learns the spiral
        accuracy = float(re.search(r"accuracy ([\d.]+)%", result.stdout).group(1))
        assert accuracy > 90.0


@pytest.mark.parametrize("page", ["docs/datasets.md", "docs/checkpoints.md"])
def test_reference_pages_hold_python_blocks_that_the_test_above_runs(page):
    """Their examples are runnable code (not ```text), so they cannot drift from fnet."""
    assert python_blocks((ROOT / page).read_text())
    assert page in RUNNABLE_PAGES


@pytest.mark.parametrize(
    "page",
    [
        "design.md",
        "getting-started.md",
        "api.md",
        "training.md",
        "per_example.md",
        "gradcheck.md",
        "datasets.md",
        "checkpoints.md",
        "parallel.md",
        "results.md",
        "performance.md",
    ],
)
def test_docs_pages_exist_and_are_linked_from_the_readme(page):
    assert (ROOT / "docs" / page).is_file()
    assert f"docs/{page}" in (ROOT / "README.md").read_text()
