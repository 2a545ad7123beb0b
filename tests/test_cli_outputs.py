"""The output folder of ``molpeg prune``: checked before anything is read, never a mixed result.

Real CLI runs (Typer's runner in-process, or the ``molpeg`` entry point in a subprocess) with
the ``torch`` backend on the committed BBBP subset. Faults are real: a SIGKILL of the process
at chosen file operations, a file-size limit for a full disk, a damaged resume file.
"""

from __future__ import annotations

import csv
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from molpeg_plugins.cli import app

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CLI = [sys.executable, "-c", "from molpeg_plugins.cli import main; main()"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
RESULTS = ("pruned.csv", "scores.csv", "model.pt")
PLOTS = ("score_histogram.png", "kept_fraction.png", "metric.png", "scaffold_kept_fraction.png")


def molpeg(*args: object):
    """Invoke ``molpeg ARGS`` in-process; return Click's result."""
    return CliRunner().invoke(app, [str(a) for a in args])


def prune_args(data: Path, out: Path, *extra: object) -> list[str]:
    """A tiny torch-backend run (2 epochs)."""
    return [
        "prune",
        str(data),
        "--backend",
        "torch",
        "--epochs",
        "2",
        "--batch-size",
        "32",
        "--output",
        str(out),
        *map(str, extra),
    ]


def prune(data: Path, out: Path, *extra: object):
    return molpeg(*prune_args(data, out, *extra))


def error_line(result) -> str:
    """The single line starting with ``Error:`` (asserting there is exactly one)."""
    lines = [ln for ln in result.output.splitlines() if ln.startswith("Error:")]
    assert len(lines) == 1, result.output
    assert "Traceback" not in result.output
    return lines[0]


@pytest.fixture
def bbbp(tmp_path: Path, data_dir: Path) -> Path:
    """The header and first 100 BBBP rows, byte for byte."""
    lines = (data_dir / "bbbp_1k.csv").read_bytes().splitlines(keepends=True)
    path = tmp_path / "bbbp100.csv"
    path.write_bytes(b"".join(lines[:101]))
    return path


# --------------------------------------------------------------------------- options first


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--learning-rate", "-1"], "--learning-rate -1.0: must be a positive number"),
        (["--learning-rate", "nan"], "--learning-rate nan: must be a positive number"),
        (["--seed", "-1"], "--seed -1: must be a whole number from 0 to 4294967295"),
        (["--seed", str(2**70)], f"--seed {2**70}: must be a whole number from 0"),
    ],
)
def test_bad_numbers_fail_before_the_output_folder_is_created(
    bbbp: Path, tmp_path: Path, args: list[str], message: str
):
    out = tmp_path / "new" / "out"
    result = prune(bbbp, out, *args)
    assert result.exit_code == 2, result.output
    assert message in error_line(result)
    assert not (tmp_path / "new").exists()


def test_output_problems_are_reported_before_the_data_is_read(tmp_path: Path):
    empty = tmp_path / "empty.csv"  # a data error, had the data been read first
    empty.write_bytes(b"")
    afile = tmp_path / "afile"
    afile.write_text("x")
    result = prune(empty, afile / "out")
    assert result.exit_code == 2 and "is a file; give a folder" in error_line(result)
    if os.geteuid() != 0:  # root ignores permissions
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        result = prune(empty, locked / "out")
        assert result.exit_code == 1 and "is not writable" in error_line(result)


def test_pretrained_folder_is_named_a_folder(bbbp: Path, tmp_path: Path):
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / "model.pt").write_bytes(b"")
    result = prune(bbbp, tmp_path / "o", "--pretrained", folder)
    assert result.exit_code == 2
    line = error_line(result)
    assert "is a folder; give the checkpoint file inside it" in line
    assert str(folder / "model.pt") in line


def test_damaged_resume_state_says_delete_it_or_overwrite(bbbp: Path, tmp_path: Path):
    out = tmp_path / "o"
    out.mkdir()
    (out / "resume.pt").write_bytes(b"PK\x03\x04 half a zip")
    result = prune(bbbp, out, "--resume")
    assert result.exit_code == 1, result.output
    line = error_line(result)
    assert "resume.pt: cannot resume from this file" in line
    assert "delete it, or rerun with --overwrite instead of --resume" in line
    assert "--trust-checkpoint" not in line
    assert not (out / "report.json").exists()


def test_full_disk_is_a_one_line_error(bbbp: Path, tmp_path: Path):
    """A file-size limit makes writes fail like a full disk (``torch.save`` included)."""
    out = tmp_path / "o"

    def limit_file_size() -> None:  # Python ignores SIGXFSZ: the write fails with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (1_000_000, 1_000_000))

    proc = subprocess.run(
        [*CLI, *prune_args(bbbp, out)],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=limit_file_size,
    )
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr and "inline_container" not in proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("Error:")]
    assert len(errors) == 1, proc.stderr
    assert f"cannot write {out / 'resume.pt'}" in errors[0] and "free disk space" in errors[0]
    assert not (out / "report.json").exists()
    assert not [p for p in out.rglob("*") if p.name.startswith(".molpeg-") and p.is_file()]


# --------------------------------------------------------------------------- inputs are safe


def test_an_input_inside_the_output_folder_is_never_overwritten(bbbp: Path, tmp_path: Path):
    run2 = tmp_path / "run2"
    run2.mkdir()
    data = run2 / "pruned.csv"
    shutil.copy(bbbp, data)
    before = data.read_bytes()
    result = prune(data, run2, "--overwrite")
    assert result.exit_code == 2, result.output
    line = error_line(result)
    assert f"DATA {data} is inside --output {run2}" in line and "pruned.csv" in line
    assert data.read_bytes() == before

    first = tmp_path / "first"
    assert prune(bbbp, first, "-q").exit_code == 0
    model = (first / "model.pt").read_bytes()
    result = prune(bbbp, first, "--overwrite", "--pretrained", first / "model.pt")
    assert result.exit_code == 2 and "--pretrained" in error_line(result)
    assert (first / "model.pt").read_bytes() == model


def test_only_molpeg_temporaries_are_cleaned(bbbp: Path, tmp_path: Path):
    out = tmp_path / "o"
    (out / "plots").mkdir(parents=True)
    user = {".notes.tmp": b"mine", ".data.csv.k2j3h4g5.tmp": b"also mine"}
    for name, content in user.items():
        (out / name).write_bytes(content)
    (out / ".molpeg-resume.pt.abcd1234.tmp").write_bytes(b"half a file")
    (out / "plots" / ".molpeg-metric.png.x1y2z3w4.tmp").write_bytes(b"")  # 0-byte leftover
    result = prune(bbbp, out, "--overwrite")
    assert result.exit_code == 0, result.output
    assert "Removed .molpeg-resume.pt.abcd1234.tmp, left by an interrupted run" in result.output
    for name, content in user.items():
        assert (out / name).read_bytes() == content
    assert not list(out.rglob(".molpeg-*"))
    assert sorted(p.name for p in (out / "plots").iterdir()) == sorted(PLOTS)


# --------------------------------------------------------------------------- existing results


def test_existing_results_need_overwrite_which_clears_only_molpeg_files(bbbp: Path, tmp_path: Path):
    out = tmp_path / "o"
    assert prune(bbbp, out, "-q", "--seed", "1", "--format", "parquet").exit_code == 0
    before = {n: (out / n).read_bytes() for n in ("pruned.csv", "report.json", "model.pt")}
    (out / "notes.txt").write_text("my notes")
    (out / "checkpoints").mkdir()
    (out / "checkpoints" / "best-epoch=3.ckpt").write_bytes(b"old")

    for extra in ((), ("--seed", "2")):
        result = prune(bbbp, out, *extra)
        assert result.exit_code == 2, result.output
        assert "interrupted run (checkpoints)" in error_line(result)
    (out / "checkpoints" / "best-epoch=3.ckpt").unlink()
    (out / "checkpoints").rmdir()
    result = prune(bbbp, out, "--seed", "2")
    assert result.exit_code == 2 and "already holds results (report.json)" in error_line(result)
    result = prune(bbbp, out, "--seed", "2", "--resume")
    assert result.exit_code == 2 and "holds a finished run" in error_line(result)
    result = prune(bbbp, out, "--overwrite", "--resume")
    assert result.exit_code == 2 and "contradict" in error_line(result)
    assert {n: (out / n).read_bytes() for n in before} == before  # nothing was touched

    (out / "checkpoints").mkdir()
    (out / "checkpoints" / "last.ckpt").write_bytes(b"old")
    result = prune(bbbp, out, "-q", "--seed", "2", "--overwrite")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == [
        "model.pt",
        "notes.txt",
        "plots",
        "pruned.csv",
        "report.json",
        "scores.csv",
    ]
    assert (out / "notes.txt").read_text() == "my notes"
    assert json.loads((out / "report.json").read_text())["parameters"]["seed"] == 2

    other = tmp_path / "other"
    other.mkdir()
    (other / "data.txt").write_text("x")
    result = prune(bbbp, other)
    assert result.exit_code == 2 and "is not empty (data.txt)" in error_line(result)


def test_same_seed_gives_a_byte_identical_model(bbbp: Path, tmp_path: Path):
    for name in ("a", "b"):
        assert prune(bbbp, tmp_path / name, "-q", "--seed", "5").exit_code == 0
    a, b = (tmp_path / "a" / "model.pt").read_bytes(), (tmp_path / "b" / "model.pt").read_bytes()
    assert a == b
    assert torch.load(tmp_path / "a" / "model.pt", weights_only=True)["kind"]


# --------------------------------------------------------------------------- kill -9 anywhere

KILLER = """
import os, signal, sys
from pathlib import Path

from molpeg_plugins.pipeline import outputs

log, kill_at = Path(sys.argv[1]), sys.argv[2]
real_replace, real_commit = os.replace, outputs.commit
count = 0

def replace(src, dst, **kw):
    global count
    count += 1
    with log.open("a") as fh:
        fh.write(f"{count} {dst}\\n")
    if kill_at == f"replace:{count}":
        os.kill(os.getpid(), signal.SIGKILL)
    return real_replace(src, dst, **kw)

def commit(staging, output):
    real_commit(staging, output)
    if kill_at == "after-commit":
        os.kill(os.getpid(), signal.SIGKILL)

os.replace, outputs.commit = replace, commit
from molpeg_plugins.cli import main

sys.argv = ["molpeg", *sys.argv[3:]]
main()
"""


def snapshot(folder: Path) -> dict[str, bytes]:
    """The result files of ``folder`` (``report.json`` without its wall time)."""
    files = {n: (folder / n).read_bytes() for n in RESULTS if (folder / n).exists()}
    files |= {f"plots/{n}": b"" for n in PLOTS if (folder / "plots" / n).exists()}
    if (folder / "report.json").exists():
        report = json.loads((folder / "report.json").read_text())
        files["report.json"] = json.dumps([report["parameters"]["seed"], report["counts"]]).encode()
    return files


def check_whole(folder: Path, old: dict[str, bytes], new: dict[str, bytes]) -> str:
    """Which result set ``folder`` holds: "old", "new", "none" or "moving"; never a mix."""
    now = snapshot(folder)
    if now == old:
        return "old"
    if now == new:
        return "new"
    assert "report.json" not in now, f"a marker beside a partial or mixed set: {sorted(now)}"
    if not now:
        return "none"
    # killed while moving the new set into place: only new files, the rest still staged
    assert all(new[k] == v for k, v in now.items()), "files of two runs side by side"
    assert (folder / ".molpeg-staging" / "report.json").is_file()
    return "moving"


@pytest.mark.slow
def test_kill_9_at_every_stage_never_leaves_a_mixed_result_set(bbbp: Path, tmp_path: Path):
    script = tmp_path / "killer.py"
    script.write_text(textwrap.dedent(KILLER))

    def run(out: Path, kill_at: str, *extra: str) -> subprocess.CompletedProcess:
        log = tmp_path / f"{out.name}.log"
        args = prune_args(bbbp, out, "--seed", "2", *extra)
        cmd = [sys.executable, str(script), str(log), kill_at, *args]
        return subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=300)

    old_run = tmp_path / "old"  # the earlier result set (seed 1) each killed run replaces
    assert prune(bbbp, old_run, "-q", "--seed", "1").exit_code == 0
    old = snapshot(old_run)

    counted = tmp_path / "counted"
    shutil.copytree(old_run, counted)
    proc = run(counted, "never", "--overwrite")
    assert proc.returncode == 0, proc.stderr
    new = snapshot(counted)
    assert len(new) == 8 and new["pruned.csv"] != old["pruned.csv"]
    moves = [ln.split(" ", 1)[1] for ln in (tmp_path / "counted.log").read_text().splitlines()]
    staged = [i + 1 for i, m in enumerate(moves) if "/.molpeg-staging/" in m]
    committed = [i + 1 for i, m in enumerate(moves) if i + 1 > staged[-1]]
    assert moves[0].endswith("/resume.pt") and moves[-1].endswith("/counted/report.json")
    kills = [  # (where, start from the old set?, what the folder holds after the kill)
        ("replace:2", True, "old"),  # training: the resume state of epoch 2 is being saved
        (f"replace:{staged[2]}", True, "old"),  # writing the outputs (into the staging folder)
        (f"replace:{staged[2]}", False, "none"),  # the same in a new folder: no partial set
        (f"replace:{committed[0]}", True, "none"),  # moving: old files gone, none moved yet
        (f"replace:{committed[-1]}", True, "moving"),  # moving: all but the marker in place
        ("after-commit", True, "new"),  # the set is complete, the resume state not yet gone
    ]
    for i, (kill_at, from_old, expected) in enumerate(kills):
        out = tmp_path / f"killed{i}"
        if from_old:
            shutil.copytree(old_run, out)
        proc = run(out, kill_at, *(["--overwrite"] if from_old else []))
        assert proc.returncode == -signal.SIGKILL, (kill_at, proc.stderr)
        assert check_whole(out, old, new) == expected, kill_at
        assert (out / "resume.pt").is_file(), "the resume state lives until the set is whole"

        # continue: the set is finished from the saved state, no finished epoch is trained again
        result = prune(bbbp, out, "--seed", "2", "--resume")
        assert result.exit_code == 0, (kill_at, result.output)
        assert check_whole(out, old, new) == "new", kill_at
        assert "epoch 1/2" not in result.output, kill_at
        assert ("epoch 2/2" in result.output) == (kill_at == "replace:2"), kill_at
        assert not (out / "resume.pt").exists() and not (out / ".molpeg-staging").exists()


# --------------------------------------------------------------------------- chemprop backend


def chemprop_available() -> bool:
    """Whether the ``chemprop`` backend is registered and its framework imports."""
    from molpeg_plugins.plugins import get_plugin_manager

    backend = get_plugin_manager().backends().get("chemprop")
    return backend is not None and backend.availability()[0]


@pytest.mark.slow
@pytest.mark.chemprop
def test_chemprop_ctrl_c_exits_130_and_resume_continues_at_the_next_epoch(
    bbbp: Path, tmp_path: Path
):
    if not chemprop_available():
        pytest.skip("chemprop is not installed")
    out = tmp_path / "o"
    args = [*CLI, "prune", str(bbbp), "--backend", "chemprop", "--epochs", "5"]
    args += ["--batch-size", "16", "--output", str(out)]
    # SIGINT as on a terminal, even when pytest runs as a background job (SIGINT ignored)
    restore = lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)  # noqa: E731
    proc = subprocess.Popen(args, env=ENV, stderr=subprocess.PIPE, text=True, preexec_fn=restore)
    assert proc.stderr is not None
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if line.startswith("epoch 3/5"):  # Ctrl-C in the 4th epoch, as a terminal sends it
            proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=300) == 130, "".join(seen)
    assert "Interrupted; continue with the same command plus --resume" in "".join(seen)
    from molpeg_plugins.pipeline.checkpoints import safe_load
    from molpeg_plugins.plugins import get_plugin_manager

    last = safe_load(out / "checkpoints" / "last.ckpt", plugin_manager=get_plugin_manager())
    finished = int(last["epoch"]) + 1  # last.ckpt is written after every epoch
    assert finished >= 2, "last.ckpt lags behind the finished epochs"
    assert not (out / "report.json").exists()
    # no checkpoint name carries Lightning's 0-based epoch (molpeg counts epochs from 1)
    assert not [p.name for p in (out / "checkpoints").iterdir() if "epoch" in p.name]

    resumed = subprocess.run(
        [*args, "--resume"], env=ENV, capture_output=True, text=True, timeout=300
    )
    assert resumed.returncode == 0, resumed.stderr
    epochs = [ln.split()[1] for ln in resumed.stderr.splitlines() if ln.startswith("epoch ")]
    assert epochs == [f"{e}/5" for e in range(finished + 1, 6)]
    report = json.loads((out / "report.json").read_text())
    assert [int(e["epoch"]) for e in report["epochs"]] == [1, 2, 3, 4, 5]
    assert all("train_loss" in e and "num_kept" in e for e in report["epochs"])
    assert not (out / "checkpoints").exists(), "the resume state goes once the set is whole"


@pytest.mark.slow
@pytest.mark.chemprop
@pytest.mark.parametrize("case", ["no validation split", "four molecules"])
def test_chemprop_without_validation_molecules(bbbp: Path, tmp_path: Path, case: str):
    if not chemprop_available():
        pytest.skip("chemprop is not installed")
    data, extra = bbbp, ["--split-sizes", "1,0,0"]
    if case == "four molecules":  # two of each class (one class alone is refused)
        lines = bbbp.read_bytes().splitlines(keepends=True)
        fields = [next(csv.reader([ln.decode()])) for ln in lines]
        label = fields[0].index("p_np")
        by_class = {
            c: [ln for ln, f in zip(lines[1:], fields[1:], strict=True) if f[label] == c]
            for c in "01"
        }
        data = tmp_path / "four.csv"
        data.write_bytes(b"".join([lines[0], *by_class["0"][:2], *by_class["1"][:2]]))
        extra = ["--target-columns", "p_np"]
    out = tmp_path / "o"
    result = molpeg("prune", data, "--backend", "chemprop", "--epochs", 2, "-o", out, *extra)
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert report["counts"]["validation"] == 0
    assert report["epochs"][0]["num_kept"] == report["counts"]["train"]
    # without validation molecules the last epoch (epoch 2, counted from 1) is reported
    assert report["best_epoch"] == 2 and len(report["files"]["plots"]) == 4


def test_a_model_written_into_the_output_folder_joins_the_staged_set(tmp_path: Path):
    """A backend that ignores ``FitJob.model_dir`` still gets its model into the result set."""
    from molpeg_plugins.pipeline import outputs

    out = tmp_path / "o"
    staging = outputs.prepare(out, overwrite=False, log=print)
    (out / "model.pt").write_bytes(b"weights")
    moved = outputs.stage_file(out / "model.pt", out, staging)
    assert moved == staging / "model.pt" and moved.read_bytes() == b"weights"
    elsewhere = tmp_path / "elsewhere.pt"
    elsewhere.write_bytes(b"x")
    assert outputs.stage_file(elsewhere, out, staging) == elsewhere and elsewhere.exists()
    assert outputs.stage_file(None, out, staging) is None
