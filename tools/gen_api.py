"""Generate docs/api.md from the docstrings of fnet's public modules.

Usage: ``python tools/gen_api.py`` (rewrites docs/api.md) or ``--check`` (exit 1 if the
file is out of date). ``tests/test_docs.py`` runs the check, so the reference cannot
drift from the code.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "api.md"
sys.path.insert(0, str(ROOT))  # document this checkout's fnet, installed or not

MODULES = [
    "fnet",
    "fnet.core",
    "fnet.layers",
    "fnet.combinators",
    "fnet.models",
    "fnet.activations",
    "fnet.initializers",
    "fnet.losses",
    "fnet.regularizers",
    "fnet.metrics",
    "fnet.gradcheck",
    "fnet.summary",
    "fnet.tree",
    "fnet.chunking",
    "fnet.validation",
    "fnet.errors",
    "fnet.datasets",
    "fnet.train",
    "fnet.per_example",
    "fnet.checkpoint",
    "fnet.distributed",
]


def public_names(module) -> list[str]:
    """The module's ``__all__``, or its public non-module attributes defined in fnet."""
    names = getattr(module, "__all__", None)
    if names is None:
        names = [
            n
            for n, v in vars(module).items()
            if not n.startswith("_")
            and not inspect.ismodule(v)
            and getattr(v, "__module__", "").startswith("fnet")
        ]
    return sorted(names)


def signature(obj) -> str:
    """The signature with function defaults shown by name, not by memory address."""
    try:
        text = str(inspect.signature(obj))
    except (TypeError, ValueError):
        return ""
    return re.sub(r"<function (\S+) at 0x[0-9a-f]+>", r"\1", text)


def render() -> str:
    lines = [
        "# API reference",
        "",
        "Generated from the docstrings by `python tools/gen_api.py`; do not edit by hand.",
        "Every public function states its shapes and dtypes. Top-level `fnet.X` names are",
        "re-exports of the modules below.",
        "",
    ]
    for mod_name in MODULES:
        module = importlib.import_module(mod_name)
        lines += [f"## `{mod_name}`", ""]
        doc = inspect.getdoc(module) or ""
        if doc:
            lines += [doc.split("\n\n")[0], ""]
        if mod_name == "fnet":
            lines += [
                "Top level: " + ", ".join(f"`{n}`" for n in public_names(module)),
                "",
            ]
            continue
        for name in public_names(module):
            obj = getattr(module, name, None)
            if obj is None or inspect.ismodule(obj):
                continue
            kind = "class" if inspect.isclass(obj) else ""
            sig = signature(obj) if callable(obj) else ""
            head = f"### `{mod_name}.{name}{sig}`" if sig else f"### `{mod_name}.{name}`"
            lines += [head + (f" ({kind})" if kind else ""), ""]
            doc = inspect.getdoc(obj) if (callable(obj) or inspect.isclass(obj)) else None
            if doc:
                lines += ["```text", doc, "```", ""]
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="fail if docs/api.md is stale")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        if OUT.read_text() != text:
            print("docs/api.md is out of date: run `python tools/gen_api.py`", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
