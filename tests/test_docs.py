"""Documentation that cannot drift: docstrings everywhere, a current API page, a README
example that runs."""

from __future__ import annotations

import inspect
import json
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
SHARED = ROOT.parent / "shared"


def python_blocks(text: str) -> list[str]:
    """The contents of the page's ```python fences, in order."""
    return re.findall(r"^```python\n(.*?)^```", text, re.S | re.M)


def test_api_reference_has_no_python_blocks():
    assert python_blocks((ROOT / "docs" / "api.md").read_text()) == []


@pytest.fixture(scope="module")
def page_runs(request, tmp_path_factory) -> dict[str, dict]:
    """Every selected page's blocks, joined, run by ``tests/docs_pages.py``: each page in a
    fresh process (forked after importing JAX and fnet once; a fresh ``__main__``
    namespace) from a scratch directory of its own, compiled with XLA's backend
    optimisation off (the pages are compile-bound). Maps page -> exit status, stdout and
    stderr; pages without python blocks, or reading absent MNIST files, are left out.

    Each scratch directory sits beside a link to ../shared (so the pages' documented
    ``data_dir="../shared/data/mnist"`` works), and files the page writes stay there.
    """
    selected = {
        item.callspec.params["page"]
        for item in request.session.items
        if item.module is request.module
        and item.originalname == "test_page_python_blocks_run_when_pasted_in_order"
    }
    scripts = {}
    for page in sorted(selected):
        code = "\n".join(python_blocks((ROOT / page).read_text()))
        if not code or ("shared/data/mnist" in code and not (SHARED / "data" / "mnist").is_dir()):
            continue
        folder = tmp_path_factory.mktemp("page")
        (folder / "work").mkdir()
        if SHARED.is_dir():
            (folder / "shared").symlink_to(SHARED, target_is_directory=True)
        scripts[page] = folder / "work" / "page.py"
        scripts[page].write_text(code)
    if not scripts:
        return {}
    out = tmp_path_factory.mktemp("pages") / "runs.json"
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "XLA_FLAGS": "--xla_backend_optimization_level=0",
        "MPLBACKEND": "Agg",
    }
    runner = str(ROOT / "tests" / "docs_pages.py")
    done = subprocess.run(
        [sys.executable, runner, str(out), *map(str, scripts.values())],
        env=env, capture_output=True, text=True, timeout=300 * len(scripts),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    runs = json.loads(out.read_text())
    return {page: runs[str(script.resolve())] for page, script in scripts.items()}


@pytest.mark.parametrize("page", RUNNABLE_PAGES)
def test_page_python_blocks_run_when_pasted_in_order(page, page_runs):
    """Each page's blocks, joined, run in a fresh interpreter from a scratch directory
    (the ``page_runs`` fixture)."""
    code = "\n".join(python_blocks((ROOT / page).read_text()))
    if not code:
        return  # nothing to run (prose-only page)
    if "shared/data/mnist" in code and not (SHARED / "data" / "mnist").is_dir():
        pytest.skip(f"{page} reads MNIST from ../shared/data/mnist, which is absent")
    result = page_runs[page]
    assert result["returncode"] == 0, f"{page}: its python blocks fail:\n{result['stderr'][-3000:]}"
    if page == "README.md":  # the first example learns the spiral
        accuracy = float(re.search(r"accuracy ([\d.]+)%", result["stdout"]).group(1))
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
