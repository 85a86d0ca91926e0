"""Every results table in the docs has its record beside it: a number a reader cannot trace
to a committed JSON, JSONL or log is not published."""

from __future__ import annotations

import re

import pytest

from alexnet.records.pages import PAGES

from fixtures import ROOT

# Pages whose number tables must name a record: the generated pages but the start page and
# the run READMEs (their tables are the runs' own metrics), and two written by hand.
RESULT_DOCS = [
    *(p for p in PAGES if p.startswith("docs/") and not p.startswith("docs/runs/")),
    "docs/serving.md",
    "docs/reliability.md",
]
NAMING_DOCS = [
    *RESULT_DOCS,
    "README.md",
    "docs/usage.md",
    "docs/testing.md",
    "docs/paper.md",
    "docs/python.md",
    "docs/data.md",
    "docs/training.md",
    "docs/transfer.md",
    "docs/export.md",
    "docs/figures.md",
    "docs/finetune.md",
    # the records' own stories, beside them
    *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs/runs").glob("*/README.md")),
]
# a record: a file under docs/bench or docs/runs (docs/bench-... too, an old place that must
# not be named any more, since nothing is there; a relative link from docs/ leaves out
# "docs/"), possibly with {a,b} alternatives or a * pattern; or, for a count rather than a
# measurement, the test that checks it against a hand count
RECORD = re.compile(
    r"docs/(?:bench|runs)[/-][A-Za-z0-9_.{},*/-]+|\]\((?:bench|runs)/[A-Za-z0-9_.,/-]+"
    r"|tests/[a-z_/]+\.py"
)
PLACEHOLDER = re.compile(r"[A-Z]{3,}")  # docs/runs/NAME/: a pattern, not a file


def sections(text: str) -> list[tuple[str, str]]:
    """(heading, body) for each part of a markdown file, split at ## and ### headings."""
    parts = re.split(r"^(#{2,3} .*)$", text, flags=re.M)
    return [("(top)", parts[0]), *list(zip(parts[1::2], parts[2::2], strict=True))]


def has_number_table(body: str) -> bool:
    rows = [line for line in body.splitlines() if line.startswith("|")]
    data = [r for r in rows if not re.fullmatch(r"\|[\s:|-]+\|?", r)][1:]  # after the header
    return any(re.search(r"\d", r) for r in data)


def expand(path: str) -> list[str]:
    match = re.search(r"\{([^}]*)\}", path)
    if not match:
        return [path]
    return [p for alt in match.group(1).split(",")
            for p in expand(path[: match.start()] + alt + path[match.end():])]  # fmt: skip


def exists(reference: str) -> bool:
    reference = reference.removeprefix("](").rstrip(".,)`")
    if PLACEHOLDER.search(reference):
        return True
    for path in expand(reference):
        if not path.startswith(("docs/", "tests/")):
            path = f"docs/{path}"
        if not (any(ROOT.glob(path)) if "*" in path else (ROOT / path).exists()):
            return False
    return True


@pytest.mark.parametrize("doc", NAMING_DOCS)
def test_every_record_a_doc_names_is_committed(doc):
    text = (ROOT / doc).read_text(encoding="utf-8")
    missing = [ref for ref in RECORD.findall(text) if not exists(ref)]
    assert not missing, f"{doc} names records that are not in the repository: {missing}"


@pytest.mark.parametrize("doc", RESULT_DOCS)
def test_every_table_of_results_has_a_record_in_its_section(doc):
    text = (ROOT / doc).read_text(encoding="utf-8")
    bare = [heading for heading, body in sections(text)
            if has_number_table(body) and not RECORD.search(body)]  # fmt: skip
    assert not bare, f"{doc}: tables of numbers without a record in their section: {bare}"


#: A page's generator code (`alexnet report-docs`), which names records' keys, not tests.
GENERATOR = re.compile(r"<!-- \[\[\[cog.*?\]\]\] -->", re.S)


@pytest.mark.parametrize("doc", NAMING_DOCS)
def test_every_test_a_doc_names_exists(doc):
    text = GENERATOR.sub("", (ROOT / doc).read_text(encoding="utf-8"))
    named = set(re.findall(r"(?<![A-Za-z0-9_])(test_[a-z0-9_]{8,})(?![a-z0-9_.])", text))
    defined = {
        name
        for path in (ROOT / "tests").rglob("test_*.py")
        for name in re.findall(r"^def (test_\w+)", path.read_text(encoding="utf-8"), re.M)
    }
    assert not named - defined, f"{doc} names tests that do not exist: {named - defined}"
