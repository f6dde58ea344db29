"""The run-directory contract (mllmrec.artifacts): manifests, fresh/resume/overwrite, the writer lock."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from mllmrec import artifacts as A


def test_manifest_round_trip_records_stage_and_refuses_another_stage(tmp_path):
    A.write_manifest(tmp_path, {"status": "complete", "n": 3}, stage="pairs")
    m = A.read_manifest(tmp_path, expect_stage="pairs")
    assert m["stage"] == "pairs" and m["n"] == 3 and "mllmrec_version" in m
    with pytest.raises(A.ArtifactError, match="holds a 'pairs' artefact, not an mllmrec train folder"):
        A.read_manifest(tmp_path, expect_stage="train")
    with pytest.raises(A.ArtifactError, match="says stage 'pairs'"):
        A.write_manifest(tmp_path, {"stage": "pairs"}, stage="train")
    assert not list(tmp_path.glob(".*tmp*"))  # atomic write leaves no temp file


def test_read_manifest_names_a_damaged_file(tmp_path):
    (tmp_path / A.MANIFEST).write_text("{not json")
    with pytest.raises(A.ArtifactError, match="not valid JSON"):
        A.read_manifest(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(A.ArtifactError, match="no manifest.json"):
        A.read_manifest(tmp_path / "empty")


def test_fresh_needs_a_new_or_empty_folder(tmp_path):
    assert A.prepare_dir(tmp_path / "new", stage="embed", mode="fresh") is None
    assert A.stage_of(tmp_path / "new") == "embed"  # marked as ours at once
    # A run that stopped before writing anything left only its `preparing` manifest: reusable as is.
    assert A.prepare_dir(tmp_path / "new", stage="embed", mode="fresh") is None
    A.write_manifest(tmp_path / "new", {"status": "running"}, stage="embed")
    with pytest.raises(A.ArtifactError, match="already holds an earlier embed run; use --resume"):
        A.prepare_dir(tmp_path / "new", stage="embed", mode="fresh")


def test_overwrite_deletes_only_our_own_same_stage_folder(tmp_path):
    own = tmp_path / "own"
    own.mkdir()
    A.write_manifest(own, {"status": "complete"}, stage="distill")
    (own / "tables.safetensors").write_bytes(b"x")
    (own / "index").mkdir()
    A.prepare_dir(own, stage="distill", mode="overwrite")
    assert A.contents(own) == [A.MANIFEST] and A.read_manifest(own)["status"] == "preparing"

    work = tmp_path / "work"
    work.mkdir()
    (work / "thesis.tex").write_text("precious")
    with pytest.raises(
        A.ArtifactError, match="--overwrite refuses to delete .* files that mllmrec did not write: thesis.tex"
    ):
        A.prepare_dir(work, stage="train", mode="overwrite")
    assert (work / "thesis.tex").read_text() == "precious"

    other = tmp_path / "other"
    other.mkdir()
    A.write_manifest(other, {"status": "complete"}, stage="embed")
    with pytest.raises(A.ArtifactError, match="holds a 'embed' artefact written by mllmrec, not a train run"):
        A.prepare_dir(other, stage="train", mode="overwrite")
    assert A.stage_of(other) == "embed"
    assert A.prepare_dir(tmp_path / "empty", stage="train", mode="overwrite") is None


def test_resume_needs_a_run_of_the_same_stage_and_lists_what_differs(tmp_path):
    with pytest.raises(A.ArtifactError, match="--resume: .* holds nothing"):
        A.prepare_dir(tmp_path / "none", stage="train", mode="resume")
    A.write_manifest(
        tmp_path, {"status": "running", "identity": {"lr": 0.1, "prompt": {"name": "a"}}}, stage="train"
    )
    m = A.prepare_dir(tmp_path, stage="train", mode="resume")
    A.check_identity(m["identity"], {"lr": 0.1, "prompt": {"name": "a"}}, out=tmp_path)
    with pytest.raises(A.ArtifactError) as e:
        A.check_identity(m["identity"], {"lr": 0.2, "prompt": {"name": "b"}}, out=tmp_path, what="train run")
    assert "lr: train run has 0.1, this run has 0.2" in str(e.value)
    assert "prompt.name: train run has 'a', this run has 'b'" in str(e.value)
    with pytest.raises(A.ArtifactError, match="contradict"):
        A.mode_of(resume=True, overwrite=True)


_HOLDER = """
import sys, time
from mllmrec.artifacts import WriterLock
WriterLock(sys.argv[1], stage="embed").acquire()
print("held", flush=True)
time.sleep(120)
"""


def test_second_writer_fails_at_once_and_a_killed_writers_lock_is_taken_over(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", _HOLDER, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        t0 = time.perf_counter()
        with pytest.raises(A.ArtifactError) as e:
            A.WriterLock(tmp_path, stage="embed").acquire()
        assert time.perf_counter() - t0 < 5  # at once, no waiting
        assert f"pid {proc.pid} on {socket.gethostname()}" in str(e.value)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        with A.WriterLock(tmp_path, stage="embed") as lock:  # stale: its process is gone
            assert json.loads(lock.path.read_text())["pid"] == os.getpid()
        assert not lock.path.exists()  # released
    finally:
        proc.kill()
        proc.wait()


def test_lock_file_is_not_counted_as_folder_contents(tmp_path):
    with A.WriterLock(tmp_path / "run", stage="pairs"):
        assert A.prepare_dir(tmp_path / "run", stage="pairs", mode="fresh") is None
        assert A.contents(tmp_path / "run") == [A.MANIFEST]
