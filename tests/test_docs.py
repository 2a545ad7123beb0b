"""The documentation cannot rot: every code block of every page runs, on real molecules.

Convention (also described in ``docs/tutorials/index.md``):

* Every fenced ``python`` and ``bash`` block of a page under ``docs/`` is executed, in page
  order, in a fresh temporary folder per page. Python blocks share one namespace, like the cells
  of a notebook; bash blocks run with ``bash -euo pipefail`` and this interpreter's ``bin``
  folder first on ``PATH`` (so ``molpeg``, ``chemprop`` and ``python`` are the tested ones).
* A block with a ``title="path"`` (shown as a file name on the site) is a file: it is written to
  that path in the page's folder instead of being executed.
* A ``text`` block right after an executed block is its expected output: the block's standard
  output must equal it (trailing spaces ignored). ``console`` blocks are illustrations only.
* The only way to leave a block out is an HTML comment on the line before it,
  ``<!-- docs-test: skip (reason) -->``, with a reason (installing packages, for example).

The README's plain-PyTorch snippet and the Quickstart's copy of the README commands are tested
here too.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
DATA = Path(__file__).parent / "data"

FENCE = re.compile(
    r"^(?P<indent>[ \t]*)```(?P<lang>[\w-]*)(?P<info>[^\n]*)\n(?P<body>.*?)^(?P=indent)```[ \t]*$",
    re.MULTILINE | re.DOTALL,
)
TITLE = re.compile(r'title="(?P<path>[^"]+)"')
SKIP = re.compile(r"<!--\s*docs-test:\s*skip\s*(?P<reason>.*?)\s*-->\s*$")
RUN_LANGS = ("python", "bash")

# Pages whose blocks need a framework, and what each page must leave behind.
PAGE_MARKS = {
    "tutorials/chemprop-cli.md": [pytest.mark.chemprop, pytest.mark.slow],
    "tutorials/chemprop-python.md": [pytest.mark.chemprop, pytest.mark.slow],
    "tutorials/deepchem.md": [pytest.mark.deepchem, pytest.mark.slow],
    "tutorials/distributed.md": [pytest.mark.slow],
    "tutorials/prune-cli.md": [pytest.mark.slow],
    "tutorials/source-pruning.md": [pytest.mark.slow],
    "tutorials/scaling.md": [pytest.mark.slow],
}
PAGE_REQUIRES = {
    "tutorials/chemprop-cli.md": "chemprop",
    "tutorials/chemprop-python.md": "chemprop",
    "tutorials/deepchem.md": "deepchem",
}
PAGE_FILES: dict[str, list[str]] = {
    "tutorials/prune-cli.md": [
        "run1/pruned.csv",
        "run1/scores.csv",
        "run1/report.json",
        "run1/model.pt",
        "run1/plots/score_histogram.png",
        "run2/pruned.csv",
    ],
    "tutorials/chemprop-cli.md": ["run-molpeg/model_0/best.pt", "run-explicit/config.toml"],
    "tutorials/chemprop-python.md": ["molpeg_history.csv", "scores.csv"],
    "tutorials/plugins.md": ["run-linear/pruned.csv", "plugins/molpeg_toploss.py"],
    "tutorials/distributed.md": ["checkpoint.pt"],
}


@dataclass
class Block:
    """One fenced code block of a page."""

    page: str
    line: int
    lang: str
    code: str
    skip_reason: str | None
    expected_output: str | None
    file: str | None = None


def _unindent(body: str, indent: str) -> str:
    """Remove the fence's own indentation (inside admonitions or tabs) from each line."""
    return "".join(
        line[len(indent) :] if line.startswith(indent) else line
        for line in body.splitlines(keepends=True)
    )


def blocks(path: Path) -> list[Block]:
    """The fenced blocks of ``path`` (a Markdown page), with skip markers and outputs."""
    text = path.read_text(encoding="utf-8")
    found: list[Block] = []
    matches = list(FENCE.finditer(text))
    for k, m in enumerate(matches):
        lang = m.group("lang")
        title = TITLE.search(m.group("info"))
        if lang == "text" and found and found[-1].lang in RUN_LANGS and not found[-1].file:
            between = text[matches[k - 1].end() : m.start()]
            if not between.strip():
                found[-1].expected_output = _unindent(m.group("body"), m.group("indent"))
            continue
        before = text[: m.start()].rstrip("\n").splitlines()
        skip = SKIP.search(before[-1]) if before else None
        found.append(
            Block(
                page=str(path.relative_to(DOCS)),
                line=text.count("\n", 0, m.start()) + 1,
                lang=lang,
                code=_unindent(m.group("body"), m.group("indent")),
                skip_reason=skip.group("reason") if skip else None,
                expected_output=None,
                file=title.group("path") if title else None,
            )
        )
    return found


def pages() -> list[str]:
    """Pages with at least one block to run (relative to ``docs/``)."""
    out = []
    for path in sorted(DOCS.rglob("*.md")):
        if any(
            b.lang in RUN_LANGS and b.skip_reason is None and b.file is None for b in blocks(path)
        ):
            out.append(str(path.relative_to(DOCS)))
    return out


def _normalise(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.strip("\n").splitlines())


def _run_bash(block: Block, cwd: Path) -> str:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["MPLBACKEND"] = "Agg"
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT), str(ROOT / "adapters"), env.get("PYTHONPATH")) if p
    )
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", block.code],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if result.returncode != 0:
        pytest.fail(
            f"docs/{block.page}:{block.line}: bash block exited {result.returncode}\n"
            f"$ {block.code}\n--- stdout ---\n{result.stdout[-3000:]}\n"
            f"--- stderr ---\n{result.stderr[-3000:]}"
        )
    return result.stdout


def _run_python(block: Block, namespace: dict) -> str:
    buffer = io.StringIO()
    code = compile(block.code, f"docs/{block.page}:{block.line}", "exec")
    with contextlib.redirect_stdout(buffer):
        exec(code, namespace)
    return buffer.getvalue()


def run_page(page: str, workdir: Path, monkeypatch: pytest.MonkeyPatch) -> list[Block]:
    """Execute every block of ``page`` in ``workdir``; return the blocks that ran."""
    monkeypatch.chdir(workdir)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setattr(sys, "path", list(sys.path))  # a page may add its own folders
    modules_before = set(sys.modules)
    namespace: dict = {"__name__": "__docs__"}
    ran = []
    for block in blocks(DOCS / page):
        if block.skip_reason is not None:
            continue
        if block.file is not None:
            target = workdir / block.file
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(block.code, encoding="utf-8")
            continue
        if block.lang not in RUN_LANGS:
            continue
        if block.lang == "python":
            output = _run_python(block, namespace)
        else:
            output = _run_bash(block, workdir)
        if block.expected_output is not None:
            assert _normalise(output) == _normalise(block.expected_output), (
                f"docs/{block.page}:{block.line}: the output shown after the block differs"
            )
        ran.append(block)
    for name in set(sys.modules) - modules_before:  # forget modules a page wrote itself
        if getattr(sys.modules[name], "__file__", None) and str(workdir) in str(
            sys.modules[name].__file__
        ):
            del sys.modules[name]
    return ran


@pytest.mark.parametrize(
    "page", [pytest.param(p, marks=PAGE_MARKS.get(p, []), id=p) for p in pages()]
)
def test_page_code_blocks_run(page: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if page in PAGE_REQUIRES:
        pytest.importorskip(PAGE_REQUIRES[page])
    ran = run_page(page, tmp_path, monkeypatch)
    assert ran, f"docs/{page}: no block ran"
    for name in PAGE_FILES.get(page, []):
        assert (tmp_path / name).is_file(), f"docs/{page} should have written {name}"


def test_every_skipped_block_says_why() -> None:
    for path in sorted(DOCS.rglob("*.md")):
        for block in blocks(path):
            if block.skip_reason is not None:
                assert re.fullmatch(r"\(.+\)", block.skip_reason), (
                    f"docs/{block.page}:{block.line}: write the reason in parentheses"
                )


def test_every_tutorial_has_code_that_runs() -> None:
    tutorials = sorted((DOCS / "tutorials").glob("*.md"))
    run = set(pages())
    missing = [
        str(p.relative_to(DOCS))
        for p in tutorials
        if p.name != "index.md" and str(p.relative_to(DOCS)) not in run
    ]
    assert not missing, f"tutorials without an executed code block: {missing}"


def _bash_blocks(text: str) -> list[str]:
    return [m.group("body").strip() for m in FENCE.finditer(text) if m.group("lang") == "bash"]


def test_quickstart_commands_are_the_readme_commands() -> None:
    readme = _bash_blocks((ROOT / "README.md").read_text(encoding="utf-8"))
    quickstart = _bash_blocks((DOCS / "quickstart.md").read_text(encoding="utf-8"))
    assert len(readme) >= 2
    assert quickstart[:2] == readme[:2]


def test_readme_pytorch_snippet_trains_on_bbbp() -> None:
    """The README's ten-line loop runs as written on real BBBP fingerprints."""
    import numpy as np
    import pandas as pd
    import torch
    from rdkit import Chem, RDLogger
    from rdkit.Chem import rdFingerprintGenerator
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    snippet = [
        m.group("body")
        for m in FENCE.finditer(readme)
        if m.group("lang") == "python" and "EMAReference" in m.group("body")
    ]
    assert len(snippet) == 1, "the README should have exactly one plain-PyTorch snippet"

    RDLogger.DisableLog("rdApp.*")
    frame = pd.read_csv(DATA / "bbbp_1k.csv")
    generator = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=1024)
    fps, labels = [], []
    for smiles, label in zip(frame["smiles"], frame["p_np"], strict=True):
        mol = Chem.MolFromSmiles(smiles)
        if mol is not None:
            fps.append(generator.GetFingerprintAsNumPy(mol))
            labels.append(float(label))
    x = torch.tensor(np.array(fps), dtype=torch.float32)
    y = torch.tensor(labels)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(1024, 64), nn.ReLU(), nn.Linear(64, 1), nn.Flatten(0))
    criterion = nn.BCEWithLogitsLoss()
    with torch.no_grad():
        loss_before = criterion(model(x), y).item()
    namespace = {
        "DataLoader": DataLoader,
        "train_set": TensorDataset(x, y),
        "model": model,
        "criterion": nn.BCEWithLogitsLoss(reduction="none"),
        "optimizer": torch.optim.Adam(model.parameters(), lr=1e-3),
        "epochs": 3,
    }
    exec(compile(snippet[0], "README.md", "exec"), namespace)

    pruner = namespace["pruner"]
    n = len(labels)  # 989 valid molecules of the 1,000 rows
    assert n == 989
    assert pruner.epoch == 3
    kept = [int(h["num_kept"]) for h in pruner.history]
    assert kept == [n, n - int(np.floor(0.6 * n + 0.5)), n - int(np.floor(0.6 * n + 0.5))]
    assert namespace["reference"].num_updates == sum(-(-k // 64) for k in kept)
    with torch.no_grad():
        loss_after = criterion(model(x), y).item()
    assert loss_after < 0.7 * loss_before  # it learned from the molecules it kept


def test_readme_deepchem_snippet_prunes_a_real_fit() -> None:
    """The README's DeepChem lines run as written around a real MultitaskClassifier."""
    dc = pytest.importorskip("deepchem")
    import numpy as np
    import pandas as pd

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    snippet = [
        m.group("body")
        for m in FENCE.finditer(readme)
        if m.group("lang") == "python" and "MolPegDeepChem" in m.group("body")
    ]
    assert len(snippet) == 1, "the README should have exactly one DeepChem snippet"
    frame = pd.read_csv(DATA / "bbbp_1k.csv").iloc[:300]
    features = dc.feat.CircularFingerprint(size=256).featurize(frame["smiles"].tolist())
    valid = np.array([f.shape == (256,) for f in features])
    x = np.stack(features[valid]).astype(np.float32)
    y = frame["p_np"].to_numpy(dtype=np.float32)[valid, None]
    train_dataset = dc.data.NumpyDataset(x, y)
    model = dc.models.MultitaskClassifier(1, 256, layer_sizes=[32], batch_size=64)
    namespace = {"model": model, "train_dataset": train_dataset}
    exec(compile(snippet[0], "README.md", "exec"), namespace)
    pruning = namespace["pruning"]
    kept = [int(h["num_kept"]) for h in pruning.pruner.history]
    n = len(y)
    assert kept == [n] + [n - int(np.floor(0.5 * n + 0.5))] * 9


def _readme_test_command() -> str:
    """The test command exactly as ``.ci/run`` extracts it from the README (its own sed line)."""
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    extract = next(line for line in ci.splitlines() if line.startswith("test_command=$("))
    script = extract[len("test_command=$(") : -1]
    return subprocess.run(
        ["bash", "-c", script], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()


def test_ci_runs_the_readme_test_command_and_nothing_else() -> None:
    """One command, the same in the README, the quickstart and CI, and it builds the docs."""
    command = _readme_test_command()
    assert "python -m pytest" in command
    assert "ruff check ." in command
    assert "mkdocs build --strict" in command
    quickstart = _bash_blocks((DOCS / "quickstart.md").read_text(encoding="utf-8"))
    assert command in quickstart
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    code = [line for line in ci.splitlines() if line.strip() and not line.startswith("#")]
    assert not [line for line in code if "pytest" in line or "mkdocs" in line or "ruff" in line]


def test_install_advice_is_true_and_in_one_place() -> None:
    """The CPU-only build comes from PyTorch's CPU index (PyPI's Linux wheel is the CUDA one)."""
    install = (DOCS / "install.md").read_text(encoding="utf-8")
    assert "pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu" in install
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "docs/install.md" in readme
    for text in (readme, (DOCS / "quickstart.md").read_text(encoding="utf-8")):
        assert "only to get" not in text  # the pin alone does not give the CPU build
        assert "whl/cpu" not in text  # the index URL lives in docs/install.md only


def test_readme_deepchem_section_names_the_extra() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## DeepChem") :]
    section = section[: section.index("\n## ", 1)]
    assert 'pip install -e ".[deepchem]"' in section


def test_benchmarks_page_lists_render_and_speak_to_users() -> None:
    """The generated page: lists start after a blank line, nested items are indented four
    spaces (what Python-Markdown needs), and it tells results, not how runs were organised."""
    text = (DOCS / "benchmarks.md").read_text(encoding="utf-8")
    item = re.compile(r"^( *)(?:[-*+]|\d+\.) ")
    fenced, previous = False, ""
    for number, line in enumerate(text.splitlines(), start=1):
        if line.lstrip().startswith("```"):
            fenced = not fenced
        found = None if fenced else item.match(line)
        if found:
            assert len(found.group(1)) % 4 == 0, f"docs/benchmarks.md:{number}: nested by 2"
            if not found.group(1) and previous.strip() and not previous.startswith(" "):
                assert item.match(previous), f"docs/benchmarks.md:{number}: no blank line"
        previous = line
    for words in ("session", "handed back", "time box", "hypothesis", "benchmark issue"):
        assert words not in text.lower(), words
