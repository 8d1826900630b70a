"""`dreamlift batch` before any run: reading a prompts file, per-line settings and errors, the summary table,
and bad input refused on one line with exit code 2. The runs themselves: tests/smoke/test_batch.py."""

import json
from pathlib import Path

import pytest

from dreamlift.batch import BatchConfig, read_prompts, summary_markdown
from dreamlift.cli import build_parser, main
from dreamlift.generate import GenerateConfig


def _cfg(path: Path, out: Path, **kw) -> BatchConfig:
    return BatchConfig(prompts=path, out=out, base=GenerateConfig(**kw))


def test_a_text_file_is_one_prompt_a_line(tmp_path):
    f = tmp_path / "p.txt"
    f.write_text("a red mug\n\n# a comment\n  a blue chair  \na red mug\n")
    lines = read_prompts(_cfg(f, tmp_path / "o", steps=7))
    assert [(l.number, l.prompt, l.slug) for l in lines] == [(1, "a red mug", "a-red-mug"),
                                                             (4, "a blue chair", "a-blue-chair"),
                                                             (5, "a red mug", "a-red-mug-2")]
    assert all(l.error is None and l.config.steps == 7 for l in lines)  # the command line's settings
    assert lines[1].config.out == (tmp_path / "o" / "a-blue-chair").absolute()
    assert lines[0].config.progress is False


def test_jsonl_lines_set_their_own_settings_over_the_command_lines(tmp_path):
    f = tmp_path / "p.jsonl"
    f.write_text("\n".join(json.dumps(o) for o in [
        {"prompt": "a red mug", "steps": 300, "nerf": {"blob_density": 2}, "representation": "gaussians"},
        {"prompt": "a blue chair", "sds.t_min": 0.1, "accept_rewrite": True, "num_cpus": 2, "num_gpus": 0.5},
        {"prompt": "a green tree"},
    ]) + "\n")
    a, b, c = read_prompts(_cfg(f, tmp_path / "o", steps=50, seed=3))
    assert (a.config.steps, a.config.seed, a.config.representation, a.config.nerf.blob_density) == \
        (300, 3, "gaussians", 2.0)
    assert b.config.sds.t_min == 0.1 and b.config.accept_rewrite is True and b.config.steps == 50
    assert (b.num_cpus, b.num_gpus) == (2.0, 0.5) and (c.num_cpus, c.num_gpus) == (1.0, 0.0)
    assert c.config.steps == 50 and c.error is None


@pytest.mark.parametrize("line, error", [
    ('{"prompt": "a red mug", "steps": -4}', "--steps must be >= 1, got -4"),
    ('{"prompt": "a red mug", "stepz": 4}', "unknown setting 'stepz'"),
    ('{"prompt": "a red mug", "out": "elsewhere"}', "'out' cannot be set per line"),
    ('{"prompt": "a red mug", "steps": [1, 2]}', "setting 'steps' must be a number"),
    ('{"prompt": ""}', "the prompt is empty"),
    ('{"steps": 3}', 'no "prompt" text in this line'),
    ('{"prompt": "a red mug", "num_cpus": "two"}', "num_cpus must be a number"),
    ('{"prompt": "a red mug",', "not a JSON object"),
    ('["a red mug"]', "not a JSON object"),
])
def test_a_bad_line_is_recorded_and_the_others_stay(tmp_path, line, error):
    f = tmp_path / "p.jsonl"
    f.write_text(json.dumps({"prompt": "a blue chair"}) + "\n" + line + "\n")
    good, bad = read_prompts(_cfg(f, tmp_path / "o"))
    assert good.error is None and good.config is not None
    assert bad.config is None and error in bad.error and bad.number == 2


@pytest.mark.parametrize("content, message", [
    (None, "does not exist"),
    (b"\n# only a comment\n", "holds no prompts"),
    (b"a red mug \xff\n", "is not UTF-8 text"),
])
def test_a_file_that_cannot_be_read_is_refused_before_any_work(tmp_path, capsys, content, message):
    f = tmp_path / "p.txt"
    if content is not None:
        f.write_bytes(content)
    assert main(["batch", str(f), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("dreamlift batch: error:") and message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_bad_options_are_refused_before_any_work(tmp_path, capsys):
    f = tmp_path / "p.txt"
    f.write_text("a red mug\n")
    (tmp_path / "file").write_text("")
    for args, message in ((["--jobs", "0"], "--jobs must be in [1, 256]"), (["--out", str(tmp_path / "file")], "is a file"),
                          (["--steps", "0"], "--steps must be >= 1"), (["--num-gpus", "-1"], "--num-gpus must be")):
        code = main(["batch", str(f), *([] if "--out" in args else ["--out", str(tmp_path / "o")]), *args])
        err = capsys.readouterr().err.strip()
        assert code == 2 and message in err and len(err.splitlines()) == 1, (args, err)


def test_the_batch_takes_generates_options(tmp_path):
    ns = build_parser(["batch"]).parse_args(["batch", "p.txt", "--steps", "9", "--representation", "gaussians",
                                             "--jobs", "2", "--nerf-blob-density", "3"])
    cfg = BatchConfig.from_namespace(ns)
    assert cfg.jobs == 2 and cfg.base.steps == 9 and cfg.base.representation == "gaussians"
    assert cfg.base.nerf.blob_density == 3.0 and cfg.base.prompt == ""
    assert cfg.out_dir == Path("outputs/p")


def test_the_summary_table_lists_every_prompt():
    summary = {"prompts_file": "p.txt", "executor": "local pool", "wall_seconds": 12.3, "ran_now": 2, "ok": 1,
               "failed": 1, "runs": [
                   {"prompt": "a red mug", "slug": "a-red-mug", "status": "ok", "error": None, "seconds": 41.2,
                    "steps": 6, "final_sds": 0.0123, "attempts": 2},
                   {"prompt": "a corgi | x", "slug": "a-corgi-x", "status": "error", "error": "not in the world",
                    "seconds": None, "attempts": 1}]}
    md = summary_markdown(summary)
    assert "| a red mug | ok | 41 | 6 | 0.0123 | 2 | a-red-mug/ |" in md
    assert "| a corgi \\| x | error | — | — | — | 1 | not in the world |" in md
    assert "1 ok, 1 failed, 2 in all" in md
