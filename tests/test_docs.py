"""Documentation that cannot drift: docstrings everywhere, a current API page, a README
example that runs."""

from __future__ import annotations

import inspect
import pathlib
import re
import runpy
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


def test_api_reference_is_up_to_date():
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "gen_api.py"), "--check"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr


def test_readme_examples_run_in_order_and_the_first_learns_the_spiral(
    capsys, monkeypatch, tmp_path
):
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, re.S)
    assert len(blocks) >= 3 and "## Fifteen lines" in readme
    script = tmp_path / "readme_examples.py"
    script.write_text("\n".join(blocks))
    monkeypatch.chdir(tmp_path)
    runpy.run_path(str(script), run_name="__main__")
    accuracy = float(re.search(r"accuracy ([\d.]+)%", capsys.readouterr().out).group(1))
    assert accuracy > 90.0


@pytest.mark.parametrize(
    "page",
    [
        "design.md",
        "getting-started.md",
        "api.md",
        "training.md",
        "per_example.md",
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
