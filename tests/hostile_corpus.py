"""A corpus of hostile input files for ``molpeg prune``, and an independent checker of its output.

Every case is a small CSV (about 30 rows) built from real rows of ``tests/data/bbbp_1k.csv``
and ``tests/data/esol_600.csv``, damaged in one way: encodings, delimiters, line endings,
quoting, SMILES that RDKit would misread, labels that make no sense, odd options.

:func:`run_case` runs one case through the real ``molpeg prune --backend torch`` (in-process,
Typer's runner) and, when the run exits 0, checks its ``pruned.csv``/``scores.csv`` row by
row against an independent reading of the input (the :mod:`csv` module and RDKit, written
without molpeg's reader): every good input line must be a row that was trained on (a kept
row byte for byte in ``pruned.csv``) or be named in the skip report; no bad line may be
trained on.

``python tests/hostile_corpus.py`` runs the whole corpus and rewrites
``docs/reference/hostile-inputs.md``.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import math
import re
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

DATA = Path(__file__).parent / "data"
BBBP_TARGET = "p_np"
ESOL_TARGET = "measured log solubility in mols per litre"
MISSING = {"", "nan", "NaN", "NA", "N/A", "n/a", "null", "NULL", "None"}
BASE_ARGS = [
    "--backend",
    "torch",
    "--epochs",
    "2",
    "--warmup-epochs",
    "1",
    "--batch-size",
    "16",
    "--split-sizes",
    "0.7,0.2,0.1",
]


# --------------------------------------------------------------------------- building cases


def _lines(path: Path, rows: int, skip: tuple[int, ...] = ()) -> tuple[str, list[str]]:
    """Header and the first ``rows`` data lines (without line endings) of a real dataset."""
    text = path.read_bytes().decode("utf-8")
    lines = text.splitlines()
    data = [line for i, line in enumerate(lines[1:]) if i not in skip][:rows]
    return lines[0], data


def _balanced(rows: list[str], n: int) -> list[str]:
    """``n`` real BBBP rows, two labelled 1 then one labelled 0, repeated (BBBP starts with 1s)."""
    ones = iter(r for r in rows if r.split(",")[2] == "1")
    zeros = iter(r for r in rows if r.split(",")[2] == "0")
    return [next(zeros) if i % 3 == 2 else next(ones) for i in range(n)]


_BBBP_HEADER, _BBBP_ALL = _lines(DATA / "bbbp_1k.csv", 300, skip=(59, 61))
BBBP_HEADER, BBBP = _BBBP_HEADER, _balanced(_BBBP_ALL, 40)  # num,name,p_np,smiles
ESOL_HEADER, ESOL = _lines(DATA / "esol_600.csv", 40)
ZERO = next(i for i, row in enumerate(BBBP) if row.split(",")[2] == "0")
"""Index of the first BBBP row labelled 0 (the first rows are all 1)."""


def bbbp(rows: list[str] | None = None, header: str = BBBP_HEADER, nl: str = "\n") -> bytes:
    """A BBBP-shaped file: header plus ``rows`` (default: the first 30 real rows)."""
    rows = BBBP[:30] if rows is None else rows
    return (nl.join([header, *rows]) + nl).encode("utf-8")


def with_cell(row: str, column: int, value: str) -> str:
    """``row`` (one CSV line) with field ``column`` replaced by the raw text ``value``."""
    fields = next(csv.reader([row]))
    parts = []
    for i, text in enumerate(fields):
        if i == column:
            parts.append(value)
            continue
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="").writerow([text])
        parts.append(buffer.getvalue())
    return ",".join(parts)


def bbbp_with(changes: dict[int, str]) -> bytes:
    """The 30 BBBP rows with the rows in ``changes`` (index → new line) replaced."""
    rows = list(BBBP[:30])
    for i, line in changes.items():
        rows[i] = line
    return bbbp(rows)


def smiles_row(i: int, smiles: str) -> str:
    """BBBP row ``i`` with its SMILES (last field) replaced."""
    return with_cell(BBBP[i], 3, smiles)


def label_row(i: int, label: str) -> str:
    """BBBP row ``i`` with its ``p_np`` label replaced."""
    return with_cell(BBBP[i], 2, label)


def esol(rows: list[str] | None = None) -> bytes:
    """An ESOL-shaped file (regression, 10 columns, SMILES last)."""
    rows = ESOL[:30] if rows is None else rows
    return ("\n".join([ESOL_HEADER, *rows]) + "\n").encode("utf-8")


def esol_label(i: int, value: str) -> str:
    """ESOL row ``i`` with its measured solubility replaced."""
    return with_cell(ESOL[i], 8, value)


@dataclass
class Case:
    """One hostile input: the file's bytes and the extra command-line options."""

    name: str
    what: str
    content: bytes
    args: list[str] = field(default_factory=list)
    file_name: str = "data.csv"


def _bbbp_case(name: str, what: str, content: bytes, *args: str) -> Case:
    return Case(name, what, content, ["--target-columns", BBBP_TARGET, *args])


def _esol_case(name: str, what: str, content: bytes, *args: str) -> Case:
    return Case(name, what, content, ["--target-columns", ESOL_TARGET, *args])


def cases() -> list[Case]:
    """The corpus, in the order of the docs table."""
    b = _bbbp_case
    lf = bbbp()
    out: list[Case] = [
        # -- encodings and line endings
        b("baseline", "30 real BBBP rows, LF", lf),
        b("crlf", "Windows line endings", bbbp(nl="\r\n")),
        b("cr-only", "old Mac line endings (CR)", bbbp(nl="\r")),
        b(
            "mixed-endings",
            "LF, CRLF and CR lines mixed",
            "".join(
                line + ("\n", "\r\n", "\r")[i % 3]
                for i, line in enumerate([BBBP_HEADER, *BBBP[:30]])
            ).encode(),
        ),
        b("no-final-newline", "last row without a line ending", lf.rstrip(b"\n")),
        b("utf8-bom", "UTF-8 with a byte-order mark", b"\xef\xbb\xbf" + lf),
        b("utf16-le", "UTF-16 LE with BOM", lf.decode().encode("utf-16")),
        b("utf16-be", "UTF-16 BE without BOM", lf.decode().encode("utf-16-be")),
        b(
            "latin1",
            "Latin-1 name 'Café' (not UTF-8)",
            bbbp_with({3: with_cell(BBBP[3], 1, "Café")}).decode().encode("latin-1"),
        ),
        b(
            "cp1252-quotes",
            "Windows-1252 curly quotes in a name",
            bbbp_with({4: with_cell(BBBP[4], 1, "“x”")}).decode().encode("cp1252"),
        ),
        Case(
            "gzip",
            "gzip-compressed CSV",
            gzip.compress(lf),
            ["--target-columns", BBBP_TARGET],
            "data.csv.gz",
        ),
        Case(
            "broken-gzip",
            "truncated gzip file",
            gzip.compress(lf)[:60],
            ["--target-columns", BBBP_TARGET],
            "data.csv.gz",
        ),
        b("nul-byte", "a NUL byte inside a row", lf.replace(b"Propanolol", b"Propa\x00nolol")),
        # -- whole-file problems
        b("empty", "empty file (0 bytes)", b""),
        b("whitespace-only", "only blank lines", b"\n\n  \n"),
        b("header-only", "a header and no rows", (BBBP_HEADER + "\n").encode()),
        b("json", "a JSON file", json.dumps([{"smiles": "CCO", "p_np": 1}]).encode()),
        b("binary-junk", "random binary bytes", bytes((i * 97 + 13) % 256 for i in range(3000))),
        b("semicolon", "semicolon-delimited", lf.replace(b",", b";")),
        b("tab", "tab-delimited", lf.replace(b",", b"\t")),
        b("blank-lines", "blank lines between rows", lf.replace(b"\n", b"\n\n", 10)),
        b(
            "huge-field",
            "a 200 kB name field",
            bbbp_with({5: with_cell(BBBP[5], 1, "x" * 200_000)}),
        ),
        b(
            "long-smiles",
            "a 1,200-atom SMILES (valid)",
            bbbp_with({6: smiles_row(6, "C" * 1200)}),
        ),
        b("single-row", "one data row", bbbp(BBBP[:1])),
        b("three-rows", "three data rows (both classes)", bbbp([BBBP[0], BBBP[1], BBBP[ZERO]])),
        # -- columns
        Case("no-smiles-column", "no column 'smiles'", bbbp(header="num,name,p_np,smi")),
        b("smiles-uppercase", "header says 'SMILES'", bbbp(header="num,name,p_np,SMILES")),
        b("header-spaces", "header 'smiles ' with a space", bbbp(header="num,name,p_np,smiles ")),
        Case("no-target-given", "target inferred from the file", lf),
        Case(
            "missing-target",
            "--target-columns that does not exist",
            lf,
            ["--target-columns", "pnp"],
        ),
        b("target-twice", "--target-columns p_np,p_np", lf, "--target-columns", "p_np,p_np"),
        b(
            "duplicate-header-target",
            "header has p_np twice",
            bbbp(header="num,name,p_np,smiles,p_np", rows=[r + ",1" for r in BBBP[:30]]),
        ),
        b(
            "duplicate-header-other",
            "header has 'name' twice",
            bbbp(header="num,name,p_np,smiles,name", rows=[r + ",x" for r in BBBP[:30]]),
        ),
        b("extra-field", "one row with an extra field", bbbp_with({7: BBBP[7] + ",extra"})),
        b(
            "short-row",
            "one row without its SMILES",
            bbbp_with({8: ",".join(BBBP[8].split(",")[:2])}),
        ),
        b("only-commas", "a row of empty fields", bbbp_with({9: ",,,"})),
        b("comment-line", "a '# comment' line", bbbp_with({10: "# exported by a tool"})),
        # -- quoting
        b(
            "stray-quote-pair",
            "a stray quote pair in names merges 5 lines",
            bbbp_with(
                {
                    11: with_cell(BBBP[11], 1, '"' + BBBP[11].split(",")[1]),
                    15: with_cell(BBBP[15], 1, BBBP[15].split(",")[1] + '"'),
                }
            ),
        ),
        b(
            "stray-quote-smiles",
            "a quote opened in a SMILES, closed 3 lines later",
            bbbp_with(
                {
                    12: smiles_row(12, '"' + BBBP[12].split(",")[3]),
                    15: smiles_row(15, BBBP[15].split(",")[3] + '"'),
                }
            ),
        ),
        b(
            "unterminated-quote",
            "a quote that is never closed",
            bbbp_with({13: with_cell(BBBP[13], 1, '"open')}),
        ),
        b(
            "unclosed-quote-large",
            "a quote never closed in a 3,000-row file",
            bbbp(
                [with_cell(r, 1, '"open') if i == 3 else r for i, r in enumerate(BBBP[:30] * 100)]
            ),
        ),
        b(
            "multiline-note",
            "a quoted name legitimately in two lines",
            bbbp_with({14: with_cell(BBBP[14], 1, '"two\nlines"')}),
        ),
        b(
            "escaped-quotes",
            'a name with escaped "" quotes',
            bbbp_with({16: with_cell(BBBP[16], 1, '"a ""b"" c"')}),
        ),
        b(
            "quoted-smiles",
            "SMILES in quotes",
            bbbp_with({17: smiles_row(17, '"' + BBBP[17].split(",")[3] + '"')}),
        ),
        b(
            "quoted-comma-name",
            "a quoted name with a comma",
            bbbp_with({18: with_cell(BBBP[18], 1, '"a, b"')}),
        ),
        b(
            "quote-inside-smiles",
            'a bare quote inside a SMILES (CC"O)',
            bbbp_with({19: smiles_row(19, 'CC"O')}),
        ),
        # -- SMILES
        b(
            "smiles-space",
            "SMILES 'CC O' (RDKit reads ethane)",
            bbbp_with({20: smiles_row(20, "CC O")}),
        ),
        b("smiles-tab", "SMILES 'CC<TAB>N'", bbbp_with({20: smiles_row(20, "CC\tN")})),
        b(
            "smiles-fullwidth",
            "full-width 'ＣＣO' (RDKit reads water)",
            bbbp_with({21: smiles_row(21, "ＣＣO")}),
        ),
        b(
            "smiles-nbsp",
            "a no-break space inside a SMILES",
            bbbp_with({21: smiles_row(21, "CC\u00a0O")}),
        ),
        b(
            "smiles-zero-width",
            "a zero-width space inside a SMILES",
            bbbp_with({22: smiles_row(22, "CC\u200bO")}),
        ),
        b(
            "smiles-cyrillic",
            "Cyrillic 'С' for carbon",
            bbbp_with({22: smiles_row(22, "\u0421CO")}),
        ),
        b(
            "smiles-padded",
            "SMILES with surrounding spaces",
            bbbp_with({23: smiles_row(23, "  CCO  ")}),
        ),
        b(
            "smiles-empty",
            "two empty SMILES cells",
            bbbp_with({23: smiles_row(23, ""), 24: smiles_row(24, "")}),
        ),
        b("smiles-garbage", "unparsable SMILES", bbbp_with({24: smiles_row(24, "not-a-smiles")})),
        b(
            "smiles-valence",
            "a pentavalent carbon",
            bbbp_with({25: smiles_row(25, "C(C)(C)(C)(C)C")}),
        ),
        b("all-invalid", "no valid SMILES at all", bbbp([smiles_row(i, "xyz") for i in range(30)])),
        b("duplicates", "the same molecule three times", bbbp_with({26: BBBP[0], 27: BBBP[0]})),
        # -- labels
        b(
            "label-nan",
            "missing labels (NaN, empty)",
            bbbp_with({1: label_row(1, "NaN"), 2: label_row(2, "")}),
        ),
        b(
            "label-inf",
            "labels inf and -inf",
            bbbp_with({3: label_row(3, "inf"), 4: label_row(4, "-inf")}),
        ),
        b("label-text", "one non-numeric label", bbbp_with({5: label_row(5, "yes")})),
        b(
            "label-mostly-text",
            "labels mostly words",
            bbbp([label_row(i, "yes" if i % 3 else "1") for i in range(30)]),
        ),
        b("label-all-missing", "no label at all", bbbp([label_row(i, "") for i in range(30)])),
        b(
            "label-float-01",
            "labels written 1.0/0.0",
            bbbp([label_row(i, BBBP[i].split(",")[2] + ".0") for i in range(30)]),
        ),
        b(
            "label-padded",
            "labels with spaces ' 1 '",
            bbbp([label_row(i, f" {BBBP[i].split(',')[2]} ") for i in range(30)]),
        ),
        b(
            "labels-2-minus1",
            "labels 2/-1, task inferred",
            bbbp([label_row(i, "2" if i % 2 else "-1") for i in range(30)]),
        ),
        b(
            "labels-2-minus1-classification",
            "labels 2/-1 with --task classification",
            bbbp([label_row(i, "2" if i % 2 else "-1") for i in range(30)]),
            "--task",
            "classification",
        ),
        b("one-class", "every label is 1", bbbp([label_row(i, "1") for i in range(30)])),
        b(
            "validation-one-class",
            "only two 0 labels, none in the validation split",
            bbbp([label_row(i, "0" if i in (0, 1) else "1") for i in range(30)]),
            "--split-sizes",
            "0.8,0.1,0.1",
        ),
        _esol_case("esol-baseline", "30 real ESOL rows (regression)", esol()),
        _esol_case(
            "esol-label-1e300",
            "a regression label 1e300",
            esol([esol_label(i, "1e300") if i == 3 else r for i, r in enumerate(ESOL[:30])]),
        ),
        _esol_case("esol-huge-lr", "--learning-rate 1e6", esol(), "--learning-rate", "1e6"),
        # -- options
        b("warmup-all-epochs", "--warmup-epochs 2 with --epochs 2", lf, "--warmup-epochs", "2"),
        _esol_case(
            "classification-on-regression",
            "--task classification on ESOL values",
            esol(),
            "--task",
            "classification",
        ),
    ]
    return out


# --------------------------------------------------------------------------- independent check


def _decode(raw: bytes) -> str | None:
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError):
            return None
    try:
        return raw.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError:
        return None


def _good_smiles(text: str) -> bool:
    from rdkit import Chem, rdBase

    text = text.strip()
    if not text or not text.isascii() or re.search(r"\s", text):
        return False
    with rdBase.BlockLogs():
        mol = Chem.MolFromSmiles(text)
    return mol is not None and mol.GetNumAtoms() > 0


def _good_label(text: str, classification: bool) -> bool:
    text = text.strip()
    if text in MISSING:
        return True
    try:
        value = float(text)
    except ValueError:
        return False
    return math.isfinite(value) and (not classification or value in (0.0, 1.0))


@dataclass
class Record:
    """A CSV record as an independent reader sees it."""

    line: int
    text: str
    fields: list[str]


def independent_records(text: str) -> tuple[list[str], list[Record]]:
    """Header and data records, each with its first line and original text."""
    physical = list(io.StringIO(text, newline=""))
    records: list[Record] = []
    reader = csv.reader(physical)
    start = 0
    for fields in reader:
        end = reader.line_num
        if fields:
            records.append(Record(start + 1, "".join(physical[start:end]), fields))
        start = end
    return records[0].fields, records[1:]


def check_output(
    case: Case, out: Path, smiles_col: str, targets: list[str]
) -> tuple[int, list[str]]:
    """Row-by-row check of an exit-0 run; returns (good rows lost, problems found)."""
    problems: list[str] = []
    text = _decode(case.content)
    assert text is not None, "exit 0 on a file that is not UTF-8"
    header, records = independent_records(text)
    report = json.loads((out / "report.json").read_text())
    classification = report["parameters"]["task"] == "classification"
    width = len(header)
    s_pos = header.index(smiles_col)
    t_pos = [header.index(t) for t in targets]

    def good(fields: list[str]) -> bool:
        if len(fields) > width:
            return False
        fields = fields + [""] * (width - len(fields))
        return _good_smiles(fields[s_pos]) and all(
            _good_label(fields[p], classification) for p in t_pos
        )

    # lines molpeg says it skipped (a merged record names its line range)
    reported: set[int] = set()
    for skip in report["skipped_rows"]:
        reported.add(skip["line"])
        span = re.search(r"lines (\d+)-(\d+)", skip["reason"])
        if span:
            reported.update(range(int(span[1]), int(span[2]) + 1))
    with open(out / "scores.csv", newline="", encoding="utf-8") as fh:
        scores = list(csv.DictReader(fh))
    if len(scores) != len(records):
        problems.append(f"scores.csv has {len(scores)} rows, the input {len(records)} records")
    by_line = {rec.line: (i, rec) for i, rec in enumerate(records)}
    lost = 0
    # every physical line that on its own is a good row must be trained on or reported
    for number, line in enumerate(io.StringIO(text, newline=""), start=1):
        if number == 1:
            continue
        fields = next(csv.reader([line.rstrip("\r\n")]), [])
        if not fields or not good(fields):
            continue
        if number in reported:
            continue
        hit = by_line.get(number)
        if hit is None or hit[0] >= len(scores) or scores[hit[0]]["split"] == "skipped":
            lost += 1
            problems.append(f"good line {number} neither trained on nor reported")
    # nothing bad may be trained on; trained SMILES are the input's
    kept_text: list[str] = []
    for i, rec in enumerate(records[: len(scores)]):
        row = scores[i]
        trained = row["split"] != "skipped"
        if trained and not good(rec.fields):
            problems.append(
                f"line {rec.line}: bad record trained on ({rec.fields[s_pos : s_pos + 1]})"
            )
        if trained and row["smiles"] != rec.fields[s_pos]:
            problems.append(f"line {rec.line}: scores.csv SMILES {row['smiles']!r} differs")
        if row["kept"] == "True":
            if row["split"] != "train":
                problems.append(f"line {rec.line}: kept but in split {row['split']}")
            kept_text.append(rec.text if rec.text.endswith(("\n", "\r")) else rec.text + "\n")
    pruned = (out / "pruned.csv").read_bytes().decode("utf-8")
    header_text = "".join(list(io.StringIO(text, newline=""))[:1])
    if pruned.removeprefix("\ufeff") != header_text + "".join(kept_text):
        problems.append("pruned.csv is not the header plus the kept rows byte for byte")
    return lost, problems


# --------------------------------------------------------------------------- running


@dataclass
class Outcome:
    """What one case did."""

    case: Case
    exit_code: int
    message: str
    lost: int | None
    problems: list[str]
    traceback: str | None


def _message(output: str) -> str:
    """The line that matters most: the error, else the skip report, else the first warning."""
    lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("Error:")]
    if errors:
        return errors[0]
    for i, ln in enumerate(lines):
        if ln.startswith("Skipped "):
            return ln + (" " + lines[i + 1] if i + 1 < len(lines) else "")
    warnings = [ln for ln in lines if ln.startswith("Warning:")]
    return warnings[0] if warnings else "finished, nothing skipped"


def run_case(case: Case, folder: Path, invoke: Callable[[list[str]], object]) -> Outcome:
    """Run ``molpeg prune`` on ``case`` in ``folder`` and check the outcome."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / case.file_name
    path.write_bytes(case.content)
    out = folder / "out"
    result = invoke(["prune", str(path), "--output", str(out), *BASE_ARGS, *case.args])
    exc = getattr(result, "exception", None)
    tb = None
    if exc is not None and not isinstance(exc, SystemExit):
        tb = "".join(traceback.format_exception(exc))
    code = int(result.exit_code)
    output = result.output
    lost, problems = None, []
    if code == 0 and tb is None:
        report = json.loads((out / "report.json").read_text())
        targets = report["parameters"]["target_columns"]
        smiles_col = report["parameters"]["smiles_column"]
        try:
            lost, problems = check_output(case, out, smiles_col, targets)
        except Exception:  # the checker itself failed: report it as a problem
            problems = [traceback.format_exc()]
    return Outcome(case, code, _message(output), lost, problems, tb)


def cli_invoker() -> Callable[[list[str]], object]:
    """Invoke the real ``molpeg`` app in-process (Typer's runner)."""
    from typer.testing import CliRunner

    from molpeg_plugins.cli import app

    runner = CliRunner()
    return lambda args: runner.invoke(app, args)


def markdown_table(outcomes: list[Outcome]) -> str:
    """The docs page: one row per case."""
    codes = {c: sum(o.exit_code == c for o in outcomes) for c in (0, 1, 2)}
    lost = sum(o.lost or 0 for o in outcomes)
    head = [
        "# Hostile inputs",
        "",
        "What `molpeg prune` does with damaged or unusual input files. Each case is a small file",
        "(about 30 real BBBP or ESOL rows) with one problem, run through",
        f"`molpeg prune FILE --backend torch {' '.join(BASE_ARGS[2:])}`. For every run that",
        "finishes (exit code 0), `pruned.csv` and `scores.csv` are checked row by row against an",
        "independent reading of the input (Python's `csv` module and RDKit): every good row is",
        "trained on (kept rows byte for byte in `pruned.csv`) or named in the skip report, and no",
        "bad row is trained on. *Rows lost* counts good rows that are neither.",
        "",
        "Exit codes: 0 finished, 1 data error, 2 usage error (see `molpeg prune --help`).",
        "",
        f"**{len(outcomes)} cases**: {codes[0]} finished, {codes[1]} data errors, {codes[2]} "
        f"usage errors; {lost} good rows lost; "
        f"{sum(o.traceback is not None for o in outcomes)} tracebacks.",
        "",
        "| case | input | exit | message (first error, warning or skip) | rows lost |",
        "|---|---|---|---|---|",
    ]
    rows = []
    for o in outcomes:
        msg = re.sub(r"/\S*/data\.csv(\.gz)?", "data.csv", o.message).replace("|", "\\|")
        msg = msg if len(msg) <= 220 else msg[:217] + "..."
        lost_cell = "—" if o.lost is None else str(o.lost)
        what = o.case.what.replace("|", "\\|")
        rows.append(f"| `{o.case.name}` | {what} | {o.exit_code} | {msg} | {lost_cell} |")
    footer = [
        "",
        "This page is generated by `python tests/hostile_corpus.py`; "
        "`tests/test_hostile_inputs.py` runs the same corpus.",
        "",
    ]
    return "\n".join(head + rows + footer)


def main() -> None:
    """Run the corpus and rewrite docs/reference/hostile-inputs.md."""
    import tempfile

    import torch

    torch.set_num_threads(1)
    invoke = cli_invoker()
    outcomes = []
    with tempfile.TemporaryDirectory() as tmp:
        for case in cases():
            outcome = run_case(case, Path(tmp) / case.name, invoke)
            print(
                f"{case.name:32} exit {outcome.exit_code}  {outcome.message[:100]}", file=sys.stderr
            )
            for p in outcome.problems:
                print(f"    PROBLEM {p}", file=sys.stderr)
            if outcome.traceback:
                print(outcome.traceback, file=sys.stderr)
            outcomes.append(outcome)
    docs = Path(__file__).resolve().parents[1] / "docs" / "reference" / "hostile-inputs.md"
    docs.write_text(markdown_table(outcomes), encoding="utf-8")
    print(f"wrote {docs}", file=sys.stderr)


if __name__ == "__main__":
    main()
