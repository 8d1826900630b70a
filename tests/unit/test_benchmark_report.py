"""benchmarks/report.py: one section rewritten in place, a new one added before the closing list of sections by
commit, and that list made from the sections' own stamps (never hand-kept); a section BENCHMARKS.md's table does not
list goes to EXPERIMENTS.md; and the repository's own docs keep that split, with run_all.py running every listed
section's script."""

import importlib.util
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

DOC = """# Benchmarks

| section | what it measures | script |
|---|---|---|
| speed | speed | `speed.py` |
| world | the world | `world_dataset.py` |
| never | not run yet | `never.py` |

<!-- bench:speed -->
## Speed

- command: `python benchmarks/speed.py`
- machine: m
- date: 2026-12-02, commit aaaaaaa

| a | b |
<!-- /bench:speed -->

<!-- bench:world -->
## World

- command: `python benchmarks/world_dataset.py`
- machine: m
- date: 2026-11-24, commit bbbbbbb

text
<!-- /bench:world -->
"""


@pytest.fixture
def report(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("bench_report", ROOT / "benchmarks" / "report.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    monkeypatch.setattr(mod, "DOC", tmp_path / "BENCHMARKS.md")
    monkeypatch.setattr(mod, "EXPERIMENTS", tmp_path / "EXPERIMENTS.md")
    monkeypatch.setattr(mod, "JSON_DIR", tmp_path / "json")
    monkeypatch.setattr(mod, "git_rev", lambda: "ccccccc")
    monkeypatch.setattr(mod, "machine", lambda: "test machine")
    monkeypatch.setattr(sys, "argv", [str(ROOT / "benchmarks" / "demo2d.py"), "--runs", "1"])
    return mod


def _commit_rows(doc: str) -> list[str]:
    table = doc[doc.index("<!-- commits -->"):doc.index("<!-- /commits -->")]
    return [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| commit")]


def test_the_commit_list_groups_sections_by_their_stamps_and_names_the_ones_not_run(report):
    doc = report.with_commit_list(DOC)
    assert _commit_rows(doc) == ["| aaaaaaa | 2026-12-02 | speed |", "| bbbbbbb | 2026-11-24 | world |"]
    assert "Listed above but not yet run: never." in doc
    assert report.with_commit_list(doc) == doc  # made again, the same: it replaces itself


def test_write_section_replaces_one_section_and_adds_a_new_one_before_the_list(report):
    report.DOC.write_text(report.with_commit_list(DOC))
    report.write_section("world", "World", "new text", data={"x": 1})
    report.write_section("never", "Never", "never text")
    doc = report.DOC.read_text()
    assert doc.count("<!-- bench:world -->") == 1 and "new text" in doc and "\ntext\n" not in doc
    assert doc.index("<!-- /bench:never -->") < doc.index("<!-- commits -->")  # the list stays last
    assert doc.count("<!-- commits -->") == 1
    rows = {row.split(" | ")[0][2:]: row.split(" | ")[2].rstrip(" |") for row in _commit_rows(doc)}
    assert rows == {"aaaaaaa": "speed", "ccccccc": "world, never"}
    assert '"commit": "ccccccc"' in (report.JSON_DIR / "world.json").read_text()
    assert not report.EXPERIMENTS.exists()


def test_a_section_the_table_does_not_list_is_an_experiment_and_goes_to_experiments_md(report):
    report.DOC.write_text(report.with_commit_list(DOC))
    before = report.DOC.read_text()
    report.write_section("lr-sweep", "A sweep", "sweep text", data={"x": 2})
    report.write_section("lr-sweep-core", "A sweep on core", "core text")
    report.write_section("lr-sweep", "A sweep", "sweep text again")
    assert report.DOC.read_text() == before  # BENCHMARKS.md untouched
    exp = report.EXPERIMENTS.read_text()
    assert exp.startswith("# Experiments")
    assert exp.count("<!-- bench:lr-sweep -->") == 1 and "sweep text again" in exp and "sweep text\n" not in exp
    assert exp.index("<!-- bench:lr-sweep -->") < exp.index("<!-- bench:lr-sweep-core -->")
    assert "<!-- commits -->" not in exp and "date: " in exp and "commit ccccccc" in exp
    assert (report.JSON_DIR / "lr-sweep.json").exists()


def test_the_repository_keeps_only_current_results_in_benchmarks_md_and_run_all_runs_them(report):
    bench = (ROOT / "docs" / "BENCHMARKS.md").read_text()
    experiments = (ROOT / "docs" / "EXPERIMENTS.md").read_text()
    listed = report.current_sections(bench)
    assert len(listed) >= 10
    assert sorted(re.findall(r"<!-- bench:([\w.-]+) -->", bench)) == sorted(listed)
    assert not set(re.findall(r"<!-- bench:([\w.-]+) -->", experiments)) & set(listed)
    run_all = (ROOT / "benchmarks" / "run_all.py").read_text()
    for row in listed.values():
        script, *flags = row.split()
        assert f'"benchmarks/{script}"' in run_all, script
        for flag in flags:
            assert f'"{flag}"' in run_all, (script, flag)
        source = (ROOT / "benchmarks" / script).read_text()  # and writes its figures as JSON beside the section
        assert re.search(r"write_section\(.{0,600}?\bdata=", source, flags=re.S), script


def test_a_recorded_command_quotes_its_arguments_and_leaves_the_note_to_the_section(report):
    import shlex

    args = ["results/a", "--title", "Suite core-v1: two runs", "--note", "A paragraph, with 'quotes' and (x).",
            "--section", "s"]
    line = report.recorded_command("benchmarks/compare_runs.py", args)
    assert "A paragraph" not in line
    assert shlex.split(line) == ["python", "benchmarks/compare_runs.py", "results/a", "--title",
                                 "Suite core-v1: two runs", "--note", "<the paragraph under the table>", "--section", "s"]
    assert shlex.split(report.recorded_command("b.py", ["--note=prose here", "--jobs", "2"]))[2:] == [
        "--note", "<the paragraph under the table>", "--jobs", "2"]
