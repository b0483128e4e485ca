"""Hostile checkpoint folders and OS failures: every one ends in a CheckpointError that
names the path, before anything large is read or anything on disk changes."""

from __future__ import annotations

import errno
import json
import os
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from fnet import checkpoint
from fnet.checkpoint import _files
from fnet.errors import CheckpointError

TREE = {"w": np.arange(6, dtype=np.float32), "b": np.ones((2, 3), np.int32)}
needs_symlinks = pytest.mark.skipif(os.name == "nt", reason="symlinks need privileges on Windows")


def _saved(tmp_path: Path, step: int = 1) -> tuple[Path, Path]:
    ckpt = tmp_path / "ckpt"
    return ckpt, checkpoint.save(ckpt, step, TREE)


def _no_leftovers(ckpt: Path) -> list[str]:
    return sorted(p.name for p in ckpt.iterdir() if p.name.startswith(".tmp-"))


@needs_symlinks
@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="no /dev/zero")
def test_arrays_file_linked_to_dev_zero_is_refused_without_reading(tmp_path):
    ckpt, step = _saved(tmp_path)
    (step / "arrays.safetensors").unlink()
    os.symlink("/dev/zero", step / "arrays.safetensors")
    with pytest.raises(CheckpointError, match=r"arrays\.safetensors is a symlink"):
        checkpoint.restore(ckpt, TREE)


def test_huge_sparse_arrays_file_is_refused_by_its_size_before_reading(tmp_path):
    ckpt, step = _saved(tmp_path)
    with open(step / "arrays.safetensors", "r+b") as f:
        f.truncate(6 << 30)  # 6 GiB, sparse: no disk used
    tracemalloc.start()
    try:
        with pytest.raises(CheckpointError, match=r"6442450944 bytes, the manifest says"):
            checkpoint.restore(ckpt, TREE)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20


def test_huge_manifest_is_refused_by_its_size(tmp_path):
    ckpt, step = _saved(tmp_path)
    with open(step / "manifest.json", "r+b") as f:
        f.truncate(1 << 30)
    with pytest.raises(CheckpointError, match=r"manifest\.json is 1,073,741,824 bytes"):
        checkpoint.read_manifest(ckpt)


@needs_symlinks
def test_step_directory_linked_out_of_the_folder_is_never_followed(tmp_path):
    outside, _ = _saved(tmp_path / "elsewhere", step=5)
    ckpt, _ = _saved(tmp_path, step=1)
    os.symlink(outside / "step_000000005", ckpt / "step_000000005")
    assert checkpoint.all_steps(ckpt) == [1]
    assert checkpoint.latest_step(ckpt) == 1
    with pytest.raises(CheckpointError, match=r"step_000000005 is a symlink to .*outside"):
        checkpoint.restore(ckpt, TREE, step=5)
    # A link that stays inside the folder is an ordinary checkpoint.
    os.rename(ckpt / "step_000000001", ckpt / "real")
    os.symlink(ckpt / "real", ckpt / "step_000000001")
    tree, _ = checkpoint.restore(ckpt, TREE, step=1)
    np.testing.assert_array_equal(tree["w"], TREE["w"])


@needs_symlinks
def test_manifest_that_is_a_symlink_is_refused(tmp_path):
    ckpt, step = _saved(tmp_path)
    os.rename(step / "manifest.json", tmp_path / "m.json")
    os.symlink(tmp_path / "m.json", step / "manifest.json")
    with pytest.raises(CheckpointError, match=r"manifest\.json is a symlink"):
        checkpoint.restore(ckpt, TREE, step=1)


def test_disk_full_while_writing_names_the_file_and_leaves_nothing(tmp_path, monkeypatch):
    def full(path, data):
        raise OSError(errno.ENOSPC, "No space left on device")  # no filename, as the OS

    monkeypatch.setattr(_files, "_write_durably", full)
    ckpt = tmp_path / "ckpt"
    with pytest.raises(CheckpointError, match=r"arrays\.safetensors: \[Errno 28\] No space"):
        checkpoint.save(ckpt, 1, TREE)
    assert checkpoint.all_steps(ckpt) == [] and _no_leftovers(ckpt) == []


def test_two_writers_of_the_same_step_keep_the_first_and_raise(tmp_path, monkeypatch):
    ckpt, _ = _saved(tmp_path, step=1)
    real = _files._write_durably

    def racing(path, data):  # the other process finishes step 2 while we write it
        real(path, data)
        if path.name == "manifest.json" and not (ckpt / "step_000000002").exists():
            monkeypatch.setattr(_files, "_write_durably", real)
            checkpoint.save(ckpt, 2, {"w": np.zeros(6, np.float32), "b": TREE["b"]})

    monkeypatch.setattr(_files, "_write_durably", racing)
    with pytest.raises(CheckpointError, match=r"step_000000002 appeared.*same step"):
        checkpoint.save(ckpt, 2, TREE)
    tree, _ = checkpoint.restore(ckpt, TREE, step=2)
    assert tree["w"].tolist() == [0.0] * 6  # the other writer's checkpoint is intact
    assert _no_leftovers(ckpt) == []


def test_checkpoint_folder_that_is_a_file_gives_checkpoint_errors(tmp_path):
    f = tmp_path / "ckpt"
    f.write_text("not a folder")
    with pytest.raises(CheckpointError, match=r"ckpt as the checkpoint folder: it is a file"):
        checkpoint.save(f, 1, TREE)
    with pytest.raises(CheckpointError, match=r"ckpt is not a directory"):
        checkpoint.latest_step(f)
    assert f.read_text() == "not a folder"


@needs_symlinks
def test_checkpoint_folder_that_is_a_dangling_symlink_gives_a_checkpoint_error(tmp_path):
    os.symlink(tmp_path / "gone", tmp_path / "ckpt")
    with pytest.raises(CheckpointError, match=r"folder: it is a dangling symlink"):
        checkpoint.save(tmp_path / "ckpt", 1, TREE)
    assert checkpoint.all_steps(tmp_path / "ckpt") == []


@pytest.mark.parametrize("field", ["step", "arrays_bytes", "extra"])
def test_integer_of_5000_digits_in_the_manifest_gives_a_checkpoint_error(tmp_path, field):
    ckpt, step = _saved(tmp_path)
    text = (step / "manifest.json").read_text()
    manifest = json.loads(text)
    old = json.dumps(manifest[field])
    assert f'"{field}": {old}' in text
    (step / "manifest.json").write_text(
        text.replace(f'"{field}": {old}', f'"{field}": {"9" * 5000}')
    )
    with pytest.raises(CheckpointError, match=r"manifest\.json.*integer of 5000 digits"):
        checkpoint.read_manifest(ckpt, step=1)


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda m: m.update(step=True), r"'step' is missing or not a non-negative int"),
        (lambda m: m.pop("arrays_sha256"), r"'arrays_sha256' is missing"),
        (lambda m: m["leaves"][0].update(shape=[-1]), r"leaves\[0\]\.'shape'"),
        (lambda m: m["leaves"][0].update(key_impl=3), r"leaves\[0\]\.'key_impl'"),
        (lambda m: m.update(format_version=2), r"format_version 2; this fnet reads version 1"),
        (lambda m: m.update(leaves={}), r"'leaves' is missing or not a list"),
    ],
)
def test_manifest_schema_violations_name_the_field(tmp_path, edit, match):
    ckpt, step = _saved(tmp_path)
    manifest = json.loads((step / "manifest.json").read_text())
    edit(manifest)
    (step / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match=match):
        checkpoint.read_manifest(ckpt)


def test_manifest_records_the_installed_fnet_version(tmp_path):
    import importlib.metadata

    _, step = _saved(tmp_path)
    versions = json.loads((step / "manifest.json").read_text())["versions"]
    assert versions["fnet"] == importlib.metadata.version("fnet")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes here")
def test_arrays_file_that_is_a_named_pipe_is_refused_without_waiting(tmp_path):
    ckpt, step = _saved(tmp_path)
    (step / "arrays.safetensors").unlink()
    os.mkfifo(step / "arrays.safetensors")
    with pytest.raises(CheckpointError, match="is not a regular file"):
        checkpoint.restore(ckpt, TREE)
