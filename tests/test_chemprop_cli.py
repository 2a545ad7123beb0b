"""``chemprop train --plugin molpeg``: the real ``chemprop`` executable on real molecules.

The subprocess tests run the user's unchanged ``chemprop`` console script, which only knows
about molpeg through the start-up ``.pth`` hook. The in-process tests use the explicit form
(``molpeg chemprop train``) for the error paths and fine-tuning, to save interpreter starts.
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from molpeg_plugins import num_kept

pytest.importorskip("chemprop")
pytestmark = pytest.mark.chemprop

CHEMPROP = shutil.which("chemprop") or str(Path(sys.executable).parent / "chemprop")
SMALL_MODEL = [
    "--message-hidden-dim",
    "32",
    "--ffn-hidden-dim",
    "32",
    "--depth",
    "2",
    "--batch-size",
    "32",
    "--pytorch-seed",
    "0",
]
BBBP_ARGS = ["-s", "smiles", "--target-columns", "p_np", "-t", "classification"]
BAD_ROWS = (59, 61)  # rows (0-based, header excluded) of bbbp_1k.csv RDKit cannot parse


def without_rows(src: Path, dst: Path, rows: tuple[int, ...]) -> Path:
    """Copy of ``src`` without the given data rows (0-based, header excluded)."""
    with open(src, newline="") as fh:
        table = list(csv.reader(fh))
    keep = [table[0]] + [r for i, r in enumerate(table[1:]) if i not in rows]
    with open(dst, "w", newline="") as fh:
        csv.writer(fh).writerows(keep)
    return dst


def default_sigint() -> None:
    """In the child: Ctrl-C raises KeyboardInterrupt, even if pytest runs as a background job
    (a non-interactive shell starts those with SIGINT ignored, and children inherit that)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # Python installs its handler after exec


def run_chemprop(args: list[str], env: dict[str, str] | None = None, **kw) -> subprocess.Popen:
    kw.setdefault("preexec_fn", default_sigint)
    full_env = {k: v for k, v in os.environ.items() if k != "MOLPEG_DISABLE_CHEMPROP_HOOK"}
    full_env.update({"PYTHONWARNINGS": "ignore", **(env or {})})
    return subprocess.Popen(
        [CHEMPROP, "train", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=full_env,
        **kw,
    )


def finish(proc: subprocess.Popen, timeout: int = 400) -> tuple[int, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out + err


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.slow
def test_chemprop_executable_with_and_without_plugin(tmp_path: Path, csv_head) -> None:
    """Pruned epochs are half as long, validation/checkpointing run every epoch, bad rows are
    skipped by row number, config.toml stays molpeg-free and reusable, no --plugin = stock."""
    dirty = csv_head("bbbp_1k.csv", 300)
    run_a = tmp_path / "a"
    code, log = finish(
        run_chemprop(
            [
                "-i",
                str(dirty),
                *BBBP_ARGS,
                "-o",
                str(run_a),
                "--epochs",
                "3",
                *SMALL_MODEL,
                "--plugin",
                "molpeg",
                "--prune-ratio",
                "0.5",
            ]
        )
    )
    assert code == 0, log[-3000:]
    for row in BAD_ROWS:
        assert f"row {row} (line {row + 2}): invalid SMILES" in log
    assert "skipped 2 of 300 rows" in log

    model_dir = run_a / "model_0"
    history = read_csv(model_dir / "molpeg_history.csv")
    assert [int(float(r["epoch"])) for r in history] == [0, 1, 2]
    batches = [int(float(r["num_batches"])) for r in history]
    kept = [int(float(r["num_kept"])) for r in history]
    split = json.loads((run_a / "splits.json").read_text())[0]
    assert kept[0] == len(split["train"]) > 230  # 298 valid molecules, 80 % train
    assert kept[1:] == [num_kept(kept[0], 0.5)] * 2
    assert batches == [math.ceil(k / 32) for k in kept] and batches[1] <= batches[0] / 2 + 1
    assert all(r["val_loss"] != "" for r in history), "validation must run every epoch"
    staleness = ("score_age_mean", "score_age_max", "visited_since_warmup", "keep_turnover")
    for row in history[1:]:  # pruned epochs carry the staleness statistics
        assert all(row[key] != "" for key in staleness), row
        assert 0.0 <= float(row["keep_turnover"]) <= 1.0
    logged = read_csv(next(model_dir.glob("trainer_logs/version_*/metrics.csv")))
    assert {f"molpeg/{key}" for key in staleness} <= set(logged[0])
    last = torch.load(model_dir / "checkpoints" / "last.ckpt", weights_only=False)
    assert last["epoch"] == 2, "checkpointing must run in the last (pruned) epoch"
    assert "MolPegCallback" in last["callbacks"]
    preds = read_csv(model_dir / "test_predictions.csv")
    assert len(preds) == len(split["test"]) and (model_dir / "best.pt").is_file()

    config = (run_a / "config.toml").read_text()
    for word in ("plugin", "prune", "ema", "invalid-smiles", "trust"):
        assert word not in config

    # reuse the config with stock chemprop: once with the hook installed (no --plugin),
    # once with the hook disabled; identical outputs show the hook is a no-op
    clean = without_rows(dirty, tmp_path / "clean.csv", BAD_ROWS)
    reuse = [
        "--config-path",
        str(run_a / "config.toml"),
        "--data-path",
        str(clean),
        "--epochs",
        "1",
        "--warmup-epochs",
        "0",
    ]
    proc_b = run_chemprop([*reuse, "-o", str(tmp_path / "b")])
    proc_c = run_chemprop(
        [*reuse, "-o", str(tmp_path / "c")], env={"MOLPEG_DISABLE_CHEMPROP_HOOK": "1"}
    )
    proc_d = run_chemprop(
        ["-i", str(clean), *BBBP_ARGS, "-o", str(tmp_path / "d"), "--plugin", "molpeg"],
        env={"MOLPEG_DISABLE_CHEMPROP_HOOK": "1"},
    )
    (code_b, log_b), (code_c, log_c), (code_d, log_d) = map(finish, (proc_b, proc_c, proc_d))
    assert code_b == 0, log_b[-3000:]
    assert code_c == 0, log_c[-3000:]
    assert "molpeg" not in log_b
    pred_b = (tmp_path / "b" / "model_0" / "test_predictions.csv").read_text()
    pred_c = (tmp_path / "c" / "model_0" / "test_predictions.csv").read_text()
    assert pred_b == pred_c
    assert not (tmp_path / "b" / "model_0" / "molpeg_history.csv").exists()
    # disabled hook: chemprop does not know --plugin at all
    assert code_d == 2 and "unrecognized arguments: --plugin" in log_d


def molpeg_chemprop_train(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """Run the explicit form in this process; return (exit code, stderr + stdout)."""
    from molpeg_chemprop.chemprop_cli import run_train

    code = run_train(args)
    captured = capsys.readouterr()
    return code, captured.err + captured.out


def test_unknown_plugin_is_refused(
    tmp_path: Path, csv_head, capsys: pytest.CaptureFixture[str]
) -> None:
    data = csv_head("bbbp_1k.csv", 49)
    code, log = molpeg_chemprop_train(
        ["-i", str(data), *BBBP_ARGS, "-o", str(tmp_path / "o"), "--plugin", "molpgg"], capsys
    )
    assert code == 2
    assert "unknown plugin 'molpgg'. Did you mean 'molpeg'?" in log


def test_unsafe_checkpoint_is_refused_before_chemprop_loads_it(
    tmp_path: Path, csv_head, capsys: pytest.CaptureFixture[str]
) -> None:
    import argparse

    bad = tmp_path / "evil.pt"
    torch.save({"state_dict": {}, "payload": argparse.Namespace(x=1)}, bad)
    data = csv_head("bbbp_1k.csv", 49)
    code, log = molpeg_chemprop_train(
        ["-i", str(data), *BBBP_ARGS, "-o", str(tmp_path / "o"), "--checkpoint", str(bad)],
        capsys,
    )
    assert code == 1
    errors = [line for line in log.splitlines() if line.startswith("chemprop train: error:")]
    assert (
        len(errors) == 1 and "argparse.Namespace" in errors[0] and "--trust-checkpoint" in errors[0]
    )


def test_mcc_loss_is_refused(tmp_path: Path, csv_head, capsys: pytest.CaptureFixture[str]) -> None:
    data = without_rows(
        csv_head("bbbp_1k.csv", 120),
        tmp_path / "d.csv",
        BAD_ROWS,
    )
    code, log = molpeg_chemprop_train(
        [
            "-i",
            str(data),
            *BBBP_ARGS,
            "-o",
            str(tmp_path / "o"),
            *SMALL_MODEL,
            "--epochs",
            "3",
            "--loss-function",
            "binary-mcc",
        ],
        capsys,
    )
    assert code == 2
    assert "BinaryMCCLoss is not a per-sample loss" in log


@pytest.mark.slow
def test_from_foundation_admet_ai_with_plugin(
    csv_head, tmp_path: Path, data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A 31-task ADMET-AI model's encoder fine-tuned on BBBP with pruning (new 1-task head)."""
    data = csv_head("bbbp_1k.csv", 200)
    out = tmp_path / "o"
    code, log = molpeg_chemprop_train(
        [
            "-i",
            str(data),
            *BBBP_ARGS,
            "-o",
            str(out),
            "--epochs",
            "2",
            "--warmup-epochs",
            "1",
            "--batch-size",
            "32",
            "--pytorch-seed",
            "0",
            "--ffn-hidden-dim",
            "32",
            "--from-foundation",
            str(data_dir / "admet_ai_v2_classification_model_0.pt"),
            "--prune-ratio",
            "0.5",
            "--prune-warmup-epochs",
            "1",
        ],
        capsys,
    )
    assert code == 0, log[-3000:]
    history = read_csv(out / "model_0" / "molpeg_history.csv")
    kept = [int(float(r["num_kept"])) for r in history]
    assert kept[1] == num_kept(kept[0], 0.5) and kept[0] > 150
    assert [int(float(r["num_batches"])) for r in history] == [math.ceil(k / 32) for k in kept]
    assert (out / "model_0" / "test_predictions.csv").is_file()


@pytest.mark.slow
def test_checkpoint_freeze_encoder_regression(
    csv_head, tmp_path: Path, data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Same-task fine-tuning (--checkpoint --freeze-encoder) of Chemprop's regression model."""
    data = csv_head("esol_600.csv", 160)
    out = tmp_path / "o"
    code, log = molpeg_chemprop_train(
        [
            "-i",
            str(data),
            "-s",
            "smiles",
            "--target-columns",
            "measured log solubility in mols per litre",
            "-t",
            "regression",
            "-o",
            str(out),
            "--epochs",
            "2",
            "--warmup-epochs",
            "1",
            "--batch-size",
            "32",
            "--pytorch-seed",
            "0",
            "--checkpoint",
            str(data_dir / "chemprop_example_v2_regression_mol.pt"),
            "--freeze-encoder",
            "--prune-ratio",
            "0.5",
        ],
        capsys,
    )
    assert code == 0, log[-3000:]
    history = read_csv(out / "model_0" / "molpeg_history.csv")
    kept = [int(float(r["num_kept"])) for r in history]
    assert kept[1] == num_kept(kept[0], 0.5) and kept[0] > 120
    assert float(history[-1]["score_max"]) > 0.0
    assert (out / "model_0" / "test_predictions.csv").is_file()


@pytest.mark.slow
def test_ctrl_c_exits_130_with_a_message(tmp_path: Path, csv_head) -> None:
    """Lightning answers Ctrl-C with exit code 1 and no word; the plugin makes it 130."""
    data = csv_head("bbbp_1k.csv", 120)
    out = tmp_path / "run"
    args = ["-i", str(data), *BBBP_ARGS, "-o", str(out), "--epochs", "50", *SMALL_MODEL]
    proc = run_chemprop([*args, "--plugin", "molpeg"])
    history = out / "model_0" / "molpeg_history.csv"
    deadline = time.monotonic() + 300
    while not history.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert proc.poll() is None, "the run ended before it could be interrupted"
    proc.send_signal(signal.SIGINT)  # what Ctrl-C on a terminal sends
    code, log = finish(proc, timeout=120)
    assert code == 130, log[-3000:]
    assert "chemprop train: interrupted; Chemprop cannot resume a run" in log
    assert "Traceback" not in log


def test_molpeg_options_without_plugin_get_a_hint(tmp_path: Path, csv_head) -> None:
    """``chemprop train --prune-ratio 0.5`` (no ``--plugin``) says what is missing."""
    data = csv_head("bbbp_1k.csv", 49)
    code, log = finish(
        run_chemprop(["-i", str(data), *BBBP_ARGS, "-o", str(tmp_path / "o"), "--prune-ratio=0.5"])
    )
    assert code == 2
    assert "unrecognized arguments: --prune-ratio" in log
    assert "hint: --prune-ratio only work with --plugin molpeg" in log
    # every molpeg option is one the start-up hook looks for
    from molpeg_chemprop.autohook import FLAG_PREFIXES
    from molpeg_chemprop.chemprop_cli import OPTIONS

    assert all(f.startswith(FLAG_PREFIXES) for flags, _ in OPTIONS.values() for f in flags)


def test_skip_report_prints_smiles_as_written(
    tmp_path: Path, data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The skipped SMILES can be copied back: one backslash, not Python's repr with two."""
    lines = (data_dir / "bbbp_1k.csv").read_bytes().splitlines(keepends=True)
    assert b"Cc1nc(sc1)\\[NH]=C(\\N)N" in lines[392]  # row 391 of BBBP, invalid
    data = tmp_path / "d.csv"
    data.write_bytes(b"".join([*lines[:40], lines[392]]))
    splits = tmp_path / "splits.json"  # aligned to the rows: molpeg stops after reporting
    splits.write_text(json.dumps([{"train": list(range(30)), "val": [30, 31], "test": [32]}]))
    code, log = molpeg_chemprop_train(
        ["-i", str(data), *BBBP_ARGS, "-o", str(tmp_path / "o"), "--splits-file", str(splits)],
        capsys,
    )
    assert "row 39 (line 41): invalid SMILES 'Cc1nc(sc1)\\[NH]=C(\\N)N' in column" in log
    assert "\\\\" not in log
    assert code == 1
