"""The command line every experiment shares, and its one start-up helper.

``run = cli.start(NAME, __doc__, argv, epochs=30)`` parses the common options (and
``--epochs``/``--lr``/``--batch-size`` for the ones the experiment declares), checks an
explicit ``--data-dir`` (:class:`~experiments.data.DataDirError` when it is missing or
empty) and starts the clock; ``run.image_data("mnist", ...)`` loads a dataset or records
why it was skipped; ``run.write(...)`` writes ``metrics.json``. A script's
``if __name__ == "__main__": cli.main(main)`` turns a ``DataDirError`` into a clear
message on stderr and exit status 1.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Callable, Sequence
from typing import Any

from experiments import data as data_mod
from experiments import records

__all__ = ["Run", "main", "make_parser", "start"]

_HYPER = {
    "epochs": (int, "training epochs"),
    "lr": (float, "learning rate"),
    "batch_size": (int, "mini-batch size"),
}


def make_parser(
    name: str, description: str, hyper: dict[str, Any] | None = None
) -> argparse.ArgumentParser:
    """The options every experiment has (``--quick``, ``--data-dir``, ``--out``,
    ``--seed``, ``--download``), plus ``--epochs``/``--lr``/``--batch-size`` for each key
    of ``hyper`` (its value: the default shown in ``--help``; ``None`` in the parsed
    args means "the experiment's default"). ``description``: the module docstring (its
    first paragraph is shown by ``--help``)."""
    first = " ".join(description.strip().split("\n\n")[0].split())
    parser = argparse.ArgumentParser(
        prog=f"python -m experiments.{name}",
        description=first,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run (seconds to a minute on 2 CPU cores): tiny data and few steps; "
        "numbers are not meaningful and verdicts read 'smoke run'",
    )
    parser.add_argument(
        "--data-dir",
        default=None,
        help="folder holding MNIST and/or Fashion-MNIST (searched alone; an error if it "
        "does not exist or holds neither); default: fnet's places ($FNET_DATA_DIR, "
        "~/.cache/fnet, /usr/share/datasets/<name>) and ../shared/data for MNIST "
        "(a dataset found nowhere is skipped)",
    )
    parser.add_argument("--out", default=f"runs/{name}", help="output folder")
    parser.add_argument("--seed", type=int, default=0, help="base random seed")
    parser.add_argument(
        "--download",
        action="store_true",
        help="download the official MNIST files (verified by SHA-256) when missing",
    )
    for key, default in (hyper or {}).items():
        kind, what = _HYPER[key]
        parser.add_argument(
            "--" + key.replace("_", "-"),
            type=kind,
            default=None,
            help=f"{what} (default: {default}; in --quick the quick setting)",
        )
    return parser


@dataclasses.dataclass
class Run:
    """One experiment's run: its parsed ``args``, clock and the data used or skipped."""

    name: str
    args: argparse.Namespace
    timer: records.Timer
    used: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    skipped: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    present: tuple[str, ...] = ()

    @property
    def quick(self) -> bool:
        return bool(self.args.quick)

    def hyper(self, key: str, default: Any) -> Any:
        """``--<key>`` if given, else ``default``."""
        value = getattr(self.args, key, None)
        return default if value is None else value

    def image_data(
        self, dataset: str, *, max_train: int | None = None, max_test: int | None = None
    ) -> data_mod.ImageData | None:
        """Load ``dataset`` (:func:`experiments.data.load_image_data`) and record it as
        used; or print and record why it is skipped and return ``None``."""
        try:
            loaded = data_mod.load_image_data(
                dataset,
                self.args.data_dir,
                seed=self.args.seed,
                download=self.args.download,
                max_train=max_train,
                max_test=max_test,
            )
        except data_mod.DataUnavailable as err:
            print(f"[{self.name}] {data_mod.DATASETS[dataset]} skipped: {err}", flush=True)
            self.skip(data_mod.DATASETS[dataset], str(err))
            return None
        print(f"[{self.name}] data: {loaded.info['note']}", flush=True)
        self.used.append(loaded.info)
        return loaded

    def skip(self, what: str, why: str) -> None:
        """Record that ``what`` (a dataset or a part of the experiment) was skipped."""
        self.skipped.append({"what": what, "why": why})

    def write(self, config: dict[str, Any], metrics: dict[str, Any], **kw: Any) -> dict:
        """Write ``metrics.json`` (:func:`experiments.records.write_metrics`) with the data
        used and skipped so far and the wall time; ``kw``: claims, headline, figures."""
        data_info = {"used": self.used, "skipped": self.skipped}
        out = self.args.out
        return records.write_metrics(
            out, config, metrics, data_info, self.timer(), name=self.name, **kw
        )


def start(name: str, description: str, argv: Sequence[str] | None, **hyper: Any) -> Run:
    """Parse ``argv`` (see :func:`make_parser`; ``hyper``: the experiment's defaults for
    ``epochs``, ``lr``, ``batch_size``), check an explicit ``--data-dir`` and start the
    clock.

    Raises:
      DataDirError: ``--data-dir`` was given and does not exist or holds no dataset.
    """
    args = make_parser(name, description, hyper).parse_args(argv)
    present: tuple[str, ...] = ()
    if args.data_dir is not None:
        present = tuple(data_mod.check_data_dir(args.data_dir))
    return Run(name, args, records.Timer(), present=present)


def main(entry: Callable[[Sequence[str] | None], Any], argv: Sequence[str] | None = None) -> None:
    """Run ``entry(argv)`` as a script: a bad ``--data-dir`` exits with status 1 and its
    message (on stderr) instead of a traceback."""
    try:
        entry(argv)
    except data_mod.DataDirError as err:
        sys.exit(f"error: {err}")
