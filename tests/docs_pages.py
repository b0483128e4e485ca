"""Run documentation pages' code, each in a fresh process, for ``tests/test_docs.py``.

``python tests/docs_pages.py OUT.json SCRIPT [SCRIPT ...]`` imports the modules the pages
import (JAX, NumPy, optax, fnet; importing them takes ~3 s of CPU) once, runs nothing
else, and then forks one child per ``SCRIPT``. Each child is what a fresh interpreter
would be after those imports: a new process, no JAX backend started yet, and the script
runs as ``__main__`` (a fresh namespace: a page that forgets an import still fails) from
its own folder, as ``python SCRIPT`` would, within ``PAGE_BUDGET_S``. ``OUT.json`` maps
each script to its exit status, stdout and stderr.
"""

from __future__ import annotations

import importlib
import json
import os
import pathlib
import runpy
import signal
import sys
import traceback

PAGE_BUDGET_S = 240  # generous for a loaded 2-core CI machine; each page takes seconds


#: What the pages import (each starts no JAX backend and no thread).
PRELOAD = ("jax", "jax.numpy", "numpy", "optax", "fnet", "fnet.checkpoint", "fnet.datasets")


def _child(script: pathlib.Path) -> None:
    """Run ``script`` as ``python script`` would, with stdout and stderr in files beside it,
    and exit (never returns)."""
    for fd, name in ((1, "stdout.txt"), (2, "stderr.txt")):
        os.dup2(os.open(script.parent / name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), fd)
    os.chdir(script.parent)
    sys.argv = [str(script)]
    sys.path[0] = str(script.parent)
    signal.alarm(PAGE_BUDGET_S)  # SIGALRM ends a page that hangs
    status = 0
    try:
        runpy.run_path(str(script), run_name="__main__")
    except SystemExit as exit_:
        status = exit_.code if isinstance(exit_.code, int) else (exit_.code is not None)
    except BaseException:
        traceback.print_exc()
        status = 1
    sys.exit(status)  # the interpreter's own exit: atexit handlers, threads joined


def main(argv: list[str]) -> None:
    out, scripts = pathlib.Path(argv[0]), [pathlib.Path(s).resolve() for s in argv[1:]]
    for name in PRELOAD:
        importlib.import_module(name)
    results = {}
    for script in scripts:
        pid = os.fork()
        if pid == 0:
            _child(script)
        _, wait_status = os.waitpid(pid, 0)
        status = os.waitstatus_to_exitcode(wait_status)  # -N: killed by signal N
        text = {n: (script.parent / f"{n}.txt").read_text() for n in ("stdout", "stderr")}
        results[str(script)] = {"returncode": status, **text}
    out.write_text(json.dumps(results))


if __name__ == "__main__":
    main(sys.argv[1:])
