"""Write one section of docs/BENCHMARKS.md (or docs/EXPERIMENTS.md), leaving the other sections as they are.

Each benchmark script owns the text between ``<!-- bench:NAME -->`` and
``<!-- /bench:NAME -->`` and rewrites only that, with the command that produced it,
the machine and the date.

docs/BENCHMARKS.md holds only the current defaults' results: the sections its opening table lists, which
``run_all.py`` regenerates. Any other section is an experiment (a setting compared to choose a default) and goes to
docs/EXPERIMENTS.md, where the decision pages under docs/decisions/ quote it.
"""

from __future__ import annotations

import datetime
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "BENCHMARKS.md"
EXPERIMENTS = ROOT / "docs" / "EXPERIMENTS.md"
EXPERIMENTS_HEADER = (
    "# Experiments\n\nThe recorded runs behind the pages under [decisions/](decisions/README.md): each section compared "
    "settings once, to choose a default, and names the command, machine, date and commit it ran at (where its "
    "script saves them, its figures are also in `docs/benchmarks/<section>.json`). They are not rerun by "
    "`benchmarks/run_all.py`: the current defaults' results are in [BENCHMARKS.md](BENCHMARKS.md). A section here is "
    "written by its script whenever the section is not one that BENCHMARKS.md's table lists.\n")


def machine() -> str:
    """One line describing this machine."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"{os.cpu_count()} CPU cores ({cpu}), {gpu}, Python {platform.python_version()}, "
            f"torch {torch.__version__}, torch threads {torch.get_num_threads()}")


#: Options whose value is prose printed in the section itself; the recorded command points there instead.
PROSE_OPTIONS = ("--note",)


def recorded_command(script: str, args: list[str]) -> str:
    """The command as a shell would take it (arguments quoted), with prose options' values replaced by a pointer
    to the paragraph they became: a recorded command stays a command, not a write-up."""
    shown, skip = [], False
    for i, arg in enumerate(args):
        if skip:
            skip = False
            continue
        name = arg.split("=", 1)[0]
        if name in PROSE_OPTIONS:
            shown += [name, "<the paragraph under the table>"]
            skip = "=" not in arg and i + 1 < len(args)
        else:
            shown.append(arg)
    return shlex.join(["python", script, *shown])


def run_stamp() -> dict:
    """This process's command (as run from the repository root), machine, date and commit."""
    script = Path(sys.argv[0]).resolve().relative_to(ROOT)
    return {"command": recorded_command(str(script), sys.argv[1:]), "machine": machine(),
            "date": datetime.date.today().isoformat(), "commit": git_rev()}


def git_rev() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return os.environ.get("BENCH_COMMIT", "unknown")  # a copy of the tree without git (a GPU machine)


def median(xs: list[float]) -> float:
    return statistics.median(xs)


JSON_DIR = ROOT / "docs" / "benchmarks"


COMMITS_START, COMMITS_END = "<!-- commits -->", "<!-- /commits -->"


def current_sections(doc: str) -> dict[str, str]:
    """The sections that BENCHMARKS.md's opening table lists (``| name | what | `script flags` |`` rows before the
    first section), in the table's order, each with the script and flags that write it: the current defaults'
    results."""
    return dict(re.findall(r"^\| ([\w.-]+) \| .* \| `([^`]*)` \|$", doc.split("<!-- bench:")[0], flags=re.M))


def doc_for(name: str, bench: str) -> Path:
    """Where the section ``name`` belongs: BENCHMARKS.md if its table lists it, else EXPERIMENTS.md (``bench``:
    BENCHMARKS.md's text)."""
    return DOC if name in current_sections(bench) else EXPERIMENTS


def _commit_time(commit: str) -> int:
    """The commit's time (seconds), to order sections of one day; 0 where git does not know it."""
    try:
        out = subprocess.run(["git", "show", "-s", "--format=%ct", commit], cwd=ROOT, capture_output=True,
                             text=True, timeout=10)
        return int(out.stdout.strip()) if out.returncode == 0 else 0
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return 0


def with_commit_list(doc: str) -> str:
    """``doc`` with its closing list of sections by the commit they ran at (newest first), made from the sections'
    own stamps, so that a section left at an older commit is seen at a glance and the list is never hand-kept."""
    stamps = re.findall(r"<!-- bench:([\w.-]+) -->\n## [^\n]*\n(?:(?!<!-- /bench:).*\n)*?- date: (\S+), commit (\w+)", doc)
    if COMMITS_START in doc and COMMITS_END in doc:
        doc = (doc[: doc.index(COMMITS_START)].rstrip() + "\n"
               + doc[doc.index(COMMITS_END) + len(COMMITS_END):].lstrip("\n"))
    if not stamps:
        return doc
    names: dict[str, list[str]] = {}
    dates: dict[str, str] = {}
    for name, date, commit in stamps:
        names.setdefault(commit, []).append(name)
        dates[commit] = max(date, dates.get(commit, date))
    rows = sorted(names, key=lambda c: (dates[c], _commit_time(c)), reverse=True)
    lines = ["## The sections by the commit they ran at", "",
             f"{len(stamps)} sections at {len(rows)} commit{'s' * (len(rows) != 1)} (made from the sections' own "
             "stamps by `benchmarks/report.py`). A section at an older commit still describes the current code where "
             "nothing it measures changed since; `python benchmarks/run_all.py` reruns them all at one commit.", "",
             "| commit | date | sections |", "|---|---|---|"]
    lines += [f"| {c} | {dates[c]} | {', '.join(names[c])} |" for c in rows]
    listed = current_sections(doc)
    run = {name for name, _, _ in stamps}
    missing = [name for name in listed if name not in run]
    if missing:
        lines += ["", "Listed above but not yet run: " + ", ".join(missing) + "."]
    return doc.rstrip() + "\n\n" + COMMITS_START + "\n" + "\n".join(lines) + "\n" + COMMITS_END + "\n"


def write_section(name: str, title: str, body: str, data: dict | None = None, ran: dict | None = None) -> None:
    """Replace (or append) the section ``name`` of docs/BENCHMARKS.md, or of docs/EXPERIMENTS.md when BENCHMARKS.md's
    table does not list it (``doc_for``); with ``data``, also write its figures as docs/benchmarks/NAME.json (with
    the same command, machine, date and commit).

    ``ran``: the command, machine, date and commit of a run made elsewhere (``run_stamp`` there: a GPU machine
    that has no git), to record instead of this process's own."""
    ran = ran or run_stamp()
    command, stamp, commit = ran["command"], ran["date"], ran["commit"]
    text = (f"<!-- bench:{name} -->\n## {title}\n\n- command: `{command}`\n- machine: {ran['machine']}\n"
            f"- date: {stamp}, commit {commit}\n\n{body.strip()}\n<!-- /bench:{name} -->")
    bench = DOC.read_text() if DOC.exists() else ""
    path = doc_for(name, bench)
    doc = bench if path == DOC else EXPERIMENTS.read_text() if EXPERIMENTS.exists() else EXPERIMENTS_HEADER
    start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    if start in doc and end in doc:
        doc = doc[: doc.index(start)] + text + doc[doc.index(end) + len(end):]
    else:
        end_of_sections = doc.index(COMMITS_START) if COMMITS_START in doc else len(doc)
        doc = doc[:end_of_sections].rstrip() + "\n\n" + text + "\n\n" + doc[end_of_sections:]
    if path == DOC:
        doc = with_commit_list(doc)
    from dreamlift.config import atomic_write

    if data is not None:
        import json

        JSON_DIR.mkdir(parents=True, exist_ok=True)
        record = {"section": name, "title": title, "command": command, "machine": ran["machine"], "date": stamp,
                  "commit": commit, "data": data}
        atomic_write(JSON_DIR / f"{name}.json", (json.dumps(record, indent=1, default=str) + "\n").encode())
    atomic_write(path, doc.encode())
