"""The hostile-input corpus through the real ``molpeg prune --backend torch`` (see
``hostile_corpus.py``): no traceback, an exit code of 0, 1 or 2, and for every finished run a
row-by-row check of ``pruned.csv``/``scores.csv`` against an independent reader — zero good rows
lost, no bad row trained on. ``docs/reference/hostile-inputs.md`` must list the same outcomes.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hostile_corpus import Outcome, cases, cli_invoker, markdown_table, run_case

pytestmark = pytest.mark.usefixtures("one_torch_thread")
DOCS = Path(__file__).resolve().parents[1] / "docs" / "reference" / "hostile-inputs.md"


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> list[Outcome]:
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("hostile")
    invoke = cli_invoker()
    try:
        return [run_case(case, root / case.name, invoke) for case in cases()]
    finally:
        torch.set_num_threads(before)


def test_corpus_is_large_and_named_uniquely():
    names = [c.name for c in cases()]
    assert len(names) >= 60 and len(set(names)) == len(names)


def test_no_traceback_and_only_documented_exit_codes(outcomes: list[Outcome]):
    for o in outcomes:
        assert o.traceback is None, f"{o.case.name}:\n{o.traceback}"
        assert o.exit_code in (0, 1, 2), f"{o.case.name}: exit {o.exit_code}: {o.message}"
        if o.exit_code:
            assert o.message.startswith("Error:"), f"{o.case.name}: {o.message}"


def test_every_finished_run_loses_no_good_row(outcomes: list[Outcome]):
    finished = [o for o in outcomes if o.exit_code == 0]
    assert len(finished) >= 25
    for o in finished:
        assert o.problems == [] and o.lost == 0, f"{o.case.name}: {o.problems}"


@pytest.mark.parametrize(
    ("name", "code", "text"),
    [
        ("stray-quote-pair", 0, "lines 13-17 were read as one record"),
        ("unterminated-quote", 1, "is never closed"),
        ("smiles-space", 0, "contains whitespace"),
        ("smiles-fullwidth", 0, "non-ASCII character 'Ｃ'"),
        ("labels-2-minus1", 0, "treating as regression; pass --task"),
        ("one-class", 1, "classification needs both classes"),
        ("esol-label-1e300", 1, "training diverged in epoch 1"),
        ("esol-huge-lr", 1, "training diverged in epoch 1"),
        ("warmup-all-epochs", 2, "no epoch would be pruned"),
        ("target-twice", 2, "more than once"),
        ("duplicate-header-target", 1, "more than once"),
        ("duplicate-header-other", 0, "the header repeats column name 'name'"),
        ("json", 1, "this is a JSON file, not a CSV"),
        ("semicolon", 2, "the file looks semicolon-separated"),
        ("tab", 2, "the file looks tab-separated"),
    ],
)
def test_issue_cases_give_their_message(outcomes: list[Outcome], name: str, code: int, text: str):
    outcome = next(o for o in outcomes if o.case.name == name)
    assert outcome.exit_code == code and text in outcome.message, outcome.message


def test_docs_table_is_current(outcomes: list[Outcome]):
    """The committed page shows these outcomes (regenerate: python tests/hostile_corpus.py)."""

    def rows(text: str) -> list[tuple[str, ...]]:
        found = re.findall(r"^\| `([^`]+)` \| .*? \| (\d) \| .* \| (\S+) \|$", text, re.M)
        return sorted(found)

    assert rows(DOCS.read_text(encoding="utf-8")) == rows(markdown_table(outcomes))
