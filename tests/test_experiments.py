"""Every experiment's ``--quick`` mode runs and writes a sane ``metrics.json`` and its
figures; the runner's ``results.md`` lists every claim of the lecture material, counts
ran/skipped/failed and never says "reproduced" for a smoke run; an explicit
``--data-dir`` that is missing or empty is an error, empty default places a skip.

The quick modes run once, together, through the runner in one subprocess (compiled
without backend optimisation; the ``quick_runs`` fixture); MNIST experiments are skipped
when the data are absent.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys

import pytest

from experiments import __main__ as runner
from experiments import (
    activations,
    capacity,
    claims,
    cli,
    convnet,
    gradcheck,
    graph,
    losses,
    mnist_classifiers,
    optimizers,
    plotting,
    regularization,
    spiral,
    templates,
)
from experiments import data as data_mod
from fnet.datasets import SYSTEM_DATA_DIR

pytestmark = pytest.mark.slow

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
SEEDS_MD = REPO_ROOT.parent / "shared" / "SEEDS.md"
KEYS = {"experiment", "config", "metrics", "data", "claims", "wall_time_s", "versions", "device"}


def quick(module):
    """Mark a test as one that checks ``module``'s run in the ``quick_runs`` fixture."""

    def mark(test):
        test.experiment = module.NAME
        return test

    return mark


@dataclasses.dataclass
class QuickRuns:
    """One ``python -m experiments --quick`` run: its ``--out`` folder, the experiments
    selected (in the runner's order), its exit status and its stdout and stderr."""

    out: pathlib.Path
    selected: list[str]
    returncode: int
    output: str

    def section(self, name: str) -> str:
        """The runner's output while it ran ``name`` (its traceback, if it failed)."""
        start = max(self.output.find(f"=== {name} ==="), 0)
        end = self.output.find("\n", self.output.find(f"=== {name}:", start))
        return self.output[start : end if end >= 0 else None][-4000:]


@pytest.fixture(scope="module")
def quick_runs(request, tmp_path_factory) -> QuickRuns:
    """``python -m experiments --quick``, once, for every experiment that a selected test
    of this module checks (marked with :func:`quick`). One interpreter: its start-up and
    compiled programs are shared, about a third less CPU time than a process each. The
    experiments whose tests need MNIST join only where the MNIST files are (their tests
    skip otherwise). A smoke run is dominated by XLA compilation, so it compiles without
    backend optimisation (about 40% less CPU time; an XLA flag, so it needs its own
    process to leave the other tests unaffected)."""
    items = [
        item
        for item in request.session.items
        if item.module is request.module and hasattr(item.function, "experiment")
    ]
    mnist = None
    if any("mnist_dir" in item.fixturenames for item in items):
        try:
            mnist = request.getfixturevalue("mnist_dir")
        except pytest.skip.Exception:
            pass
    wanted = {
        item.function.experiment
        for item in items
        if mnist is not None or "mnist_dir" not in item.fixturenames
    }
    selected = [name for name in runner.EXPERIMENTS if name in wanted]
    out = tmp_path_factory.mktemp("quick_runs")
    argv = ["--quick", "--only", ",".join(selected), "--out", str(out), "--seed", "0"]
    if mnist is not None:
        argv += ["--data-dir", str(mnist)]
    flags = os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "XLA_FLAGS": flags.strip()}
    env["PYTHONUNBUFFERED"] = "1"  # tracebacks stay beside their experiment's lines
    done = subprocess.run(
        [sys.executable, "-m", "experiments", *argv], cwd=REPO_ROOT, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=1200,
    )  # fmt: skip
    return QuickRuns(out, selected, done.returncode, done.stdout)


def _record(runs: QuickRuns, module) -> dict:
    """``module``'s ``metrics.json`` from ``runs``, after the checks every quick run meets."""
    assert module.NAME in runs.selected
    assert f"=== {module.NAME}: ran in" in runs.output, runs.section(module.NAME)
    out = runs.out / module.NAME
    on_disk = json.loads((out / "metrics.json").read_text())
    record = on_disk
    assert KEYS <= set(on_disk)
    assert on_disk["versions"]["jax"] and on_disk["versions"]["fnet"]
    assert on_disk["config"]["quick"] is True
    for fig in on_disk.get("figures", []):
        assert (out / fig).is_file() and (out / fig).stat().st_size > 1000
    for row in on_disk["claims"]:
        assert {"id", "claim", "source", "setting", "result", "verdict"} <= set(row)
        claims.by_id(row["id"])  # every reported claim is registered
    assert record["experiment"] == module.NAME
    return on_disk


@quick(spiral)
def test_spiral_quick_mlp_fits_and_linear_does_not(quick_runs):
    rec = _record(quick_runs, spiral)
    models = rec["metrics"]["models"]
    assert models["2-100-3 relu"]["train_accuracy"] >= 0.95
    assert 0.3 <= models["linear"]["train_accuracy"] <= 0.65
    assert 0.68 <= rec["metrics"]["coordinate_noise"]["bayes_accuracy"] <= 0.80
    assert {r["id"] for r in rec["claims"]} == {
        "spiral_linear_half",
        "spiral_mlp_fits",
        "spiral_coord_ceiling",
    }


@quick(regularization)
def test_regularization_quick_shrinks_weights_as_lambda_grows(quick_runs):
    rec = _record(quick_runs, regularization)
    mean = rec["metrics"]["per_lambda_mean"]
    assert mean["lambda"] == [0.0, 0.001, 0.01, 0.1]
    norms = mean["w_norm_hidden"]
    assert norms[0] > norms[1] > norms[2] > norms[3]
    assert mean["train_accuracy"][0] >= 0.9
    spread = rec["metrics"]["spread_vs_concentrated"]
    assert spread["l2_spread"] < spread["l2_concentrated"]
    assert (quick_runs.out / "regularization" / "regularization_boundaries.png").is_file()


@quick(graph)
def test_graph_quick_shows_dead_code_removed_and_neuron_gradients(quick_runs):
    rec = _record(quick_runs, graph)
    m = rec["metrics"]
    assert m["dead_value"]["sin_in_hlo_before_xla"] >= 1
    assert m["dead_value"]["sin_in_hlo_after_xla"] == 0
    assert m["dead_value"]["cos_in_hlo_after_xla"] == 0
    assert m["step"]["hlo_after_fusions"] > 0
    assert m["step"]["jaxpr_grad_eqns"] > m["step"]["jaxpr_loss_eqns"]
    grads = m["neuron"]["grads"]
    assert grads["w0"] == pytest.approx(-0.1966, abs=1e-3)
    assert grads["x1"] == pytest.approx(-0.5898, abs=1e-3)
    assert m["neuron"]["values"]["out"] == pytest.approx(0.7311, abs=1e-4)
    assert m["pytorch_autograd_example"]["d_out_d_x"] == [[-1.5, -1.5], [-1.5, -1.5]]
    assert (quick_runs.out / "graph" / "jaxpr_grad.txt").is_file()


@quick(gradcheck)
def test_gradcheck_quick_passes_every_leaf(quick_runs):
    rec = _record(quick_runs, gradcheck)
    assert rec["metrics"]["leaves"]
    assert all(leaf["passed"] for leaf in rec["metrics"]["leaves"])
    # Every leaf passes, but a quick run assesses no claim.
    assert rec["claims"][0]["verdict"].startswith("smoke run")
    assert (quick_runs.out / "gradcheck" / "gradcheck_table.md").is_file()


def test_gradcheck_cases_cover_every_public_layer():
    assert gradcheck.coverage([c.name for c in gradcheck.cases()]) == []


@pytest.mark.data
@quick(mnist_classifiers)
def test_mnist_classifiers_quick_trains_both_models(mnist_dir, quick_runs):
    rec = _record(quick_runs, mnist_classifiers)
    res = rec["metrics"]["runs"]["mnist"]["results"]
    n = rec["data"]["used"][0]["test_examples"]
    for kind in ("linear", "mlp"):
        assert 0 < res[kind]["test_errors_mean"] < 0.5 * n  # better than chance (90%)
        assert len(res[kind]["test_errors_per_epoch"][0]) == rec["config"]["epochs"]["mnist"]
    # The data used are stated per dataset (Fashion-MNIST is not in this --data-dir).
    assert rec["data"]["used"][0]["dataset"] == "MNIST"
    assert any(s["what"] == "Fashion-MNIST" for s in rec["data"]["skipped"])
    assert "5,000-image subset" in rec["data"]["used"][0]["note"]
    init = rec["metrics"]["init_check"]["linear"]
    assert init["pixel_max"] <= 1.0 and init["pixel_min"] >= 0.0
    assert {r["id"] for r in rec["claims"]} == {
        "mnist_linear_errors",
        "mnist_mlp_errors",
        "mnist_hyperparameters",
        "mnist_init_scaling",
    }


@pytest.mark.data
@quick(losses)
def test_losses_quick_hinge_examples_with_met_margins_have_zero_gradient(mnist_dir, quick_runs):
    rec = _record(quick_runs, losses)
    hinge = rec["metrics"]["results"]["hinge"]["final"]
    ce = rec["metrics"]["results"]["cross-entropy"]["final"]
    assert hinge["frac_zero_grad"] > 0.2
    assert hinge["max_grad_norm_margin_met"] == 0.0
    assert ce["frac_zero_grad"] == 0.0
    assert ce["min_grad_norm_margin_met"] > 0.0


@pytest.mark.data
@quick(activations)
def test_activations_quick_records_curves_for_both_tasks(mnist_dir, quick_runs):
    rec = _record(quick_runs, activations)
    tasks = rec["metrics"]["tasks"]
    assert set(tasks) == {"spiral", "mnist"}
    for task in tasks.values():
        for act in ("sigmoid", "relu"):
            losses_ = task["activations"][act]["runs"][0]["train_loss"]
            assert all(v == v and v > 0 for v in losses_)  # finite, positive


@pytest.mark.data
@quick(templates)
def test_templates_quick_match_their_classes(mnist_dir, quick_runs):
    rec = _record(quick_runs, templates)
    assert rec["metrics"]["mnist"]["own_class_best"] >= 8
    assert (quick_runs.out / "templates" / "templates_mnist.png").is_file()
    # CIFAR-10 is absent here: it must be reported as skipped, with a reason.
    if "cifar10" not in rec["metrics"]:
        assert any("CIFAR-10" in s["what"] for s in rec["data"]["skipped"])


@pytest.mark.data
@quick(convnet)
def test_convnet_quick_reports_params_and_epoch_time(mnist_dir, quick_runs):
    rec = _record(quick_runs, convnet)
    for name in ("convnet", "mlp"):
        r = rec["metrics"]["mnist"][name]
        assert r["params"] > 0 and r["epoch_time_s"] > 0
        assert 0 <= r["test_errors"] <= rec["data"]["used"][0]["test_examples"]


@pytest.fixture
def no_default_data(tmp_path, monkeypatch, isolated_data_roots):
    """fnet's default data places (FNET_DATA_DIR, the per-user cache, the system
    location: conftest's ``isolated_data_roots``) and ``../shared/data`` see no data."""
    empty = tmp_path / "empty_shared"
    empty.mkdir()
    monkeypatch.setattr(data_mod, "SHARED_DATA", empty)
    return empty


def test_mnist_experiment_with_empty_default_places_is_skipped_with_a_reason(
    tmp_path, no_default_data
):
    rec = mnist_classifiers.main(["--quick", "--out", str(tmp_path / "m")])
    assert not rec["data"]["used"]
    whats = [s["what"] for s in rec["data"]["skipped"]]
    assert whats == ["MNIST", "Fashion-MNIST"]
    for key, skipped in zip(data_mod.DATASETS, rec["data"]["skipped"], strict=True):
        # every place looked in is named: fnet's rule (and ../shared/data for MNIST)
        assert all(str(d) in skipped["why"] for d in data_mod.search_dirs(key, None))
    assert str(no_default_data / "mnist") in rec["data"]["skipped"][0]["why"]
    assert all(row["verdict"].startswith("not run") for row in rec["claims"])


@pytest.mark.parametrize("make_dir", [False, True], ids=["missing", "empty"])
def test_experiment_with_explicit_data_dir_missing_or_empty_is_an_error(tmp_path, make_dir):
    folder = tmp_path / "data"
    if make_dir:
        folder.mkdir()
        (folder / "README").write_text("no data here")
    argv = ["--quick", "--out", str(tmp_path / "m"), "--data-dir", str(folder)]
    with pytest.raises(data_mod.DataDirError, match=r"no such folder|no usable data"):
        mnist_classifiers.main(argv)
    with pytest.raises(SystemExit) as exit_:  # as a script: a message and a non-zero status
        cli.main(mnist_classifiers.main, argv)
    assert exit_.value.code not in (0, None) and str(folder) in str(exit_.value.code)
    assert not (tmp_path / "m" / "metrics.json").exists()


@pytest.mark.parametrize("make_dir", [False, True], ids=["missing", "empty"])
def test_runner_exits_2_on_a_missing_or_empty_data_dir_and_runs_nothing(tmp_path, make_dir, capsys):
    folder = tmp_path / "data"
    if make_dir:
        folder.mkdir()
    out = tmp_path / "runs"
    status = runner.main(
        ["--quick", "--only", "graph", "--data-dir", str(folder), "--out", str(out)]
    )
    assert status == 2
    assert "--data-dir" in capsys.readouterr().err
    assert not (out / "results.md").exists()


def test_runner_counts_a_data_less_experiment_as_skipped(tmp_path, no_default_data):
    status = runner.main(["--quick", "--only", "mnist_classifiers", "--out", str(tmp_path)])
    assert status == 0
    text = (tmp_path / "results.md").read_text()
    assert "0 ran, 1 skipped, 0 failed" in text
    assert "**mnist_classifiers** (skipped" in text


def test_data_dir_check_finds_fashion_mnist_in_a_debian_style_folder(tmp_path):
    folder = tmp_path / "fashion-mnist"
    folder.mkdir()
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                 "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):  # fmt: skip
        (folder / name).write_bytes(b"")
    assert data_mod.check_data_dir(tmp_path) == ["fashion_mnist"]
    assert data_mod.check_data_dir(folder) == ["mnist", "fashion_mnist"]  # same file names


def test_mnist_files_under_fashion_mnist_names_are_not_taken_for_fashion_mnist(mnist_dir, tmp_path):
    """Same names, other content: fnet's loader rejects them by content, and an explicit
    --data-dir is never made up for with Fashion-MNIST found elsewhere (e.g. Debian's)."""
    for split in ("t10k", "train"):  # MNIST's test files under both splits' names
        for kind in ("images-idx3", "labels-idx1"):
            shutil.copy(mnist_dir / f"t10k-{kind}-ubyte.gz", tmp_path / f"{split}-{kind}-ubyte.gz")
    assert data_mod.check_data_dir(tmp_path) == ["mnist", "fashion_mnist"]  # by name only
    with pytest.raises(data_mod.DataUnavailable, match="Fashion-MNIST not found") as err:
        data_mod.load_image_data("fashion_mnist", tmp_path, seed=0)
    assert str(tmp_path) in str(err.value)
    assert re.search(
        r"not the official|content verification failed|outside --data-dir", str(err.value)
    )


def test_explicit_data_dir_without_fashion_mnist_skips_it_even_if_installed(mnist_dir):
    with pytest.raises(data_mod.DataUnavailable, match="Fashion-MNIST not found") as err:
        data_mod.load_image_data("fashion_mnist", mnist_dir, seed=0)
    assert str(mnist_dir) in str(err.value) and "/usr/share" not in str(err.value)


def test_debian_fashion_mnist_is_found_in_the_default_places_and_verified():
    debian = SYSTEM_DATA_DIR / "fashion-mnist"  # where dataset-fashion-mnist installs
    if not (debian / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip("Debian's dataset-fashion-mnist is not installed (apt-get install it)")
    data = data_mod.load_image_data("fashion_mnist", None, seed=0, max_train=10, max_test=10)
    assert data.full and data.name == "Fashion-MNIST-0.01k"
    assert "verified" in data.info["verified"] and str(debian) in data.info["test_files"][0]


@quick(capacity)
def test_capacity_quick_compares_size_with_l2_on_both_tasks(mnist_dir, quick_runs):
    rec = _record(quick_runs, capacity)
    m = rec["metrics"]
    assert set(m) == {"spiral", "images"}
    for task in m.values():
        acc = task["accuracy"]["test"]
        assert len(acc) == len(task["sizes"]) and len(acc[0]) == len(task["lambdas"])
        assert all(0.0 <= a <= 1.0 for row in acc for a in row)
        assert {"size_only", "largest_regularized", "best_overall"} == set(task["choices"])
    assert rec["claims"][0]["id"] == "size_not_regularizer"
    assert rec["claims"][0]["verdict"].startswith("smoke run")
    assert len(rec["figures"]) == 2


@quick(optimizers)
def test_optimizers_quick_runs_every_method_including_lbfgs(mnist_dir, quick_runs):
    rec = _record(quick_runs, optimizers)
    methods = rec["metrics"]["mnist"]["methods"]
    assert set(methods) == set(optimizers.SWEEP)
    for method, m in methods.items():
        curve = m["runs"][str(m["chosen"])]
        assert len(curve["passes"]) == len(curve["test_error"]) >= 2
        assert curve["train_loss"][-1] < curve["train_loss"][0], method
    assert rec["claims"][0]["verdict"].startswith("smoke run")


def _seeds_section6_claims() -> list[str]:
    text = SEEDS_MD.read_text()
    section = text[text.index("## 6.") : text.index("## Data at hand")]
    rows = [ln for ln in section.splitlines() if ln.startswith("| ") and "---" not in ln]
    return [ln.split("|")[1].strip() for ln in rows[1:]]  # skip the header row


# The six rows of the lecture material's claims table (SEEDS.md section 6), pinned here so
# the registry is checked in every clone, also where SEEDS.md (outside the repository) is not.
SEEDS_SECTION6 = [
    "about 750 test errors (of 10,000)",
    "about 250 test errors",
    "learning rate 0.1 to 0.01; batch 100 to 1000",
    "init `W ~ N(0, sigma = sqrt(2/(M+N)))`, b = 0; pixels divided by 255",
    "ReLU converges about 6x faster than sigmoid",
    "smoother decision boundary as lambda grows 0.001 -> 0.01 -> 0.1",
]


def _norm(s: str) -> str:
    return re.sub(r"\s+", " ", s.replace("`", "")).strip()


def test_claims_registry_holds_every_row_of_seeds_section_6():
    registered = [c.claim for c in claims.CLAIMS if c.seeds_table]
    assert [_norm(c) for c in registered] == [_norm(c) for c in SEEDS_SECTION6]
    experiments = set(runner.EXPERIMENTS)
    assert all(c.experiment in experiments for c in claims.CLAIMS)


def test_pinned_claims_match_seeds_md_where_it_is_present():
    if not SEEDS_MD.is_file():
        pytest.skip(f"{SEEDS_MD} is not part of the repository and absent here")
    assert [_norm(c) for c in _seeds_section6_claims()] == [_norm(c) for c in SEEDS_SECTION6]


@quick(graph)
def test_runner_results_md_lists_every_claim_and_reports_data(quick_runs):
    assert quick_runs.returncode == 0, quick_runs.output[-4000:]
    text = (quick_runs.out / "results.md").read_text()
    for c in claims.CLAIMS:
        assert c.claim.replace("|", "\\|") in text
    assert "| claim | source | setting (data actually used) | fnet result | verdict |" in text
    assert "## Data used and skipped" in text
    assert f"{len(quick_runs.selected)} ran, 0 skipped, 0 failed" in text
    for name in quick_runs.selected:
        assert f"- **{name}** (ran" in text
        assert f"=== {name}: ran in" in quick_runs.output
    # A smoke run assesses nothing: no verdict says "reproduced".
    rows = [ln for ln in text.splitlines() if ln.startswith("| ") and "---" not in ln][1:]
    verdicts = [row.rsplit("|", 2)[-2] for row in rows]
    assert not any("reproduced" in v for v in verdicts), verdicts
    assert any("smoke run" in v for v in verdicts)
    # The page stands alone: no reference to files outside the repository.
    assert "SEEDS" not in text and claims.LECTURE_MATERIAL in text


@quick(graph)
def test_runner_report_only_rebuilds_results_md_and_names_what_was_not_selected(
    quick_runs, tmp_path, capsys
):
    shutil.copytree(quick_runs.out / "graph", tmp_path / "graph")  # an earlier run's output
    status = runner.main(["--quick", "--report-only", "--only", "graph", "--out", str(tmp_path)])
    assert status == 0
    assert "=== graph: ran" in capsys.readouterr().out
    text = (tmp_path / "results.md").read_text()
    assert "1 ran, 0 skipped, 0 failed" in text
    assert "not run (mnist_classifiers not selected)" in text
    assert "smoke run" in text  # graph's claims, as its quick run reported them
    # Nothing was run again: the record on disk is the earlier run's.
    assert json.loads((tmp_path / "graph" / "metrics.json").read_text()) == json.loads(
        (quick_runs.out / "graph" / "metrics.json").read_text()
    )


def test_runner_reports_a_failing_experiment_and_exits_nonzero(tmp_path, monkeypatch):
    def boom(argv):
        raise RuntimeError("deliberate failure")

    monkeypatch.setattr(graph, "main", boom)
    status = runner.main(["--quick", "--only", "graph", "--out", str(tmp_path)])
    assert status == 1
    text = (tmp_path / "results.md").read_text()
    assert "graph failed: RuntimeError: deliberate failure" in text


def test_common_boundary_length_is_shorter_for_a_straight_boundary():
    import numpy as np

    extent = (-1.0, 1.0, -1.0, 1.0)
    xx, yy = np.meshgrid(np.linspace(-1, 1, 50), np.linspace(-1, 1, 50))
    straight = (xx > 0).astype(int)
    wiggly = (xx > 0.3 * np.sin(12 * yy)).astype(int)
    assert plotting.boundary_length(straight, extent) == pytest.approx(2.0, rel=0.05)
    assert plotting.boundary_length(wiggly, extent) > 1.5 * plotting.boundary_length(
        straight, extent
    )


def test_templates_cifar10_is_looked_for_as_the_binary_archive_in_the_data_dir_alone(
    tmp_path, isolated_data_roots
):
    with pytest.raises(data_mod.DataUnavailable, match=r"cifar-10-binary\.tar\.gz") as err:
        templates._cifar(str(tmp_path), download=False)
    assert f"not found in {tmp_path / 'cifar10'}" in str(err.value)
    (tmp_path / "cifar-10-binary.tar.gz").write_bytes(b"not an archive")
    with pytest.raises(data_mod.DataUnavailable, match=r"not usable: .*cifar-10-binary"):
        templates._cifar(str(tmp_path), download=False)
