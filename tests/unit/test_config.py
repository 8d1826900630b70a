import os
import stat
from dataclasses import replace

import pytest

from dreamlift.config import DreamliftError, atomic_write


def test_atomic_write_replaces_whole_files_with_normal_permissions(tmp_path):
    target = tmp_path / "sub" / "out.bin"
    atomic_write(target, b"first")
    atomic_write(target, b"second")
    assert target.read_bytes() == b"second"
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask
    assert [p.name for p in target.parent.iterdir()] == ["out.bin"]  # no temporary files left


def test_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "out.bin"
    atomic_write(target, b"old")

    with pytest.raises(TypeError):
        atomic_write(target, "not bytes")  # fails inside the write
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_overrides_set_nested_fields_with_their_types():
    from dreamlift.config import with_overrides
    from dreamlift.generate import GenerateConfig

    base = GenerateConfig(prompt="a red mug")
    cfg = with_overrides(base, ["nerf.blob_density=2", "area_weight=100", "sds.t_max_final=none", "steps=5",
                                "progress=false", "preset=quality"])
    assert (cfg.nerf.blob_density, cfg.area_weight, cfg.sds.t_max_final, cfg.steps, cfg.progress, cfg.preset) == (
        2.0, 100.0, None, 5, False, "quality")
    assert isinstance(cfg.steps, int) and base.nerf.blob_density is None  # the original is untouched


@pytest.mark.parametrize("item, message", [
    ("x=1", "unknown setting 'x'"), ("nerf.foo=2", "unknown setting 'foo'"), ("steps=abc", "cannot read"),
    ("area_weight", "KEY=VALUE"), ("steps.x=1", "no sub-settings"), ("preset=slow", "cannot read"),
    ("progress=maybe", "cannot read"),
])
def test_bad_overrides_are_clear_errors(item, message):
    from dreamlift.config import DreamliftError, with_overrides
    from dreamlift.generate import GenerateConfig

    with pytest.raises(DreamliftError, match=message):
        with_overrides(GenerateConfig(), [item])


def test_eval_checks_its_overrides_before_any_work(tmp_path):
    from dreamlift.config import DreamliftError
    from dreamlift.evaluate.runner import EvalConfig

    with pytest.raises(DreamliftError, match="unknown setting"):
        EvalConfig(out=tmp_path, set=("nerf.nope=1",)).validate()
    cfg = EvalConfig(out=tmp_path, set=("area_weight=3",))
    cfg.validate()
    from dreamlift.evaluate.suite import get_suite

    assert cfg.generate_config(get_suite("core-v1")[0]).area_weight == 3.0
    assert not any(tmp_path.iterdir())


def test_eval_caption_gives_image_to_3d_each_objects_caption_and_is_refused_elsewhere(tmp_path):
    from dreamlift.config import DreamliftError
    from dreamlift.evaluate.runner import EvalConfig
    from dreamlift.evaluate.suite import get_suite

    row = get_suite("image-v1")[0]
    cfg = EvalConfig(suite="image-v1", out=tmp_path / "c", caption=True)
    cfg.validate()
    gen = cfg.generate_config(row)
    assert type(gen).__name__ == "ImageTo3DConfig" and gen.prompt == row.prompt and gen.accept_rewrite
    assert EvalConfig(suite="image-v1", out=tmp_path / "n").generate_config(row).prompt == ""
    assert EvalConfig(suite="image-v1", caption=True).out_dir.name == "image-v1-caption"
    for bad in (dict(suite="core-v1"), dict(suite="image-v1", text=True), dict(suite="image-v1", ceiling=True)):
        with pytest.raises(DreamliftError, match="--caption"):
            EvalConfig(out=tmp_path / "x", caption=True, **bad).validate()
    assert not any(tmp_path.iterdir())


def test_the_area_prior_is_on_for_the_builtin_prior_and_picks_the_density_bias():
    from dreamlift.generate import AREA_PRIOR_BLOB, GenerateConfig
    from dreamlift.scene.nerf import MAGIC3D_BLOB, NeRF, NeRFConfig

    on = GenerateConfig(prompt="a red mug").resolved()
    assert on.area_weight > 0 and (on.nerf.blob_density, on.nerf.blob_radius) == AREA_PRIOR_BLOB
    off = GenerateConfig(prompt="a red mug", area_weight=0.0).resolved()
    assert (off.nerf.blob_density, off.nerf.blob_radius) == MAGIC3D_BLOB
    sd = GenerateConfig(prompt="a red mug", backend="stable-diffusion").resolved()
    assert sd.area_weight == 0 and (sd.nerf.blob_density, sd.nerf.blob_radius) == MAGIC3D_BLOB
    mine = GenerateConfig(prompt="a red mug", nerf=NeRFConfig(blob_density=5.0)).resolved()
    assert (mine.nerf.blob_density, mine.nerf.blob_radius) == (5.0, AREA_PRIOR_BLOB[1])  # a set value is kept
    assert (NeRF(NeRFConfig()).cfg.blob_density, NeRF(NeRFConfig()).cfg.blob_radius) == MAGIC3D_BLOB
    with pytest.raises(DreamliftError, match="area"):
        GenerateConfig(prompt="a red mug", area_tolerance=1.5).resolved()
    with pytest.raises(DreamliftError, match="--area-weight must be >= 0"):
        GenerateConfig(prompt="a red mug", area_weight=-1.0).resolved()


def test_each_representation_has_its_own_surface_level_unless_one_is_set():
    from dreamlift.generate import DEFAULT_SURFACE_DENSITY, GenerateConfig

    assert GenerateConfig(prompt="a red mug").resolved().surface_density == 1.0
    gaussians = GenerateConfig(prompt="a red mug", representation="gaussians")
    assert gaussians.resolved().surface_density == DEFAULT_SURFACE_DENSITY["gaussians"] < 1.0
    assert replace(gaussians, surface_density=2.0).resolved().surface_density == 2.0
    with pytest.raises(DreamliftError, match="--surface-density must be >= 1e-06"):
        replace(gaussians, surface_density=0.0).resolved()


def test_options_from_a_config_parse_back_to_it():
    """config_to_options spells every changed setting (nested, bool, None, tuple, negative) so that the command
    line's own parser reads back the same config; unchanged ones are left out."""
    from dataclasses import replace

    from dreamlift.cli import build_parser
    from dreamlift.config import config_from_args, config_to_options, with_overrides
    from dreamlift.generate import GenerateConfig

    assert config_to_options(GenerateConfig(prompt="a red mug")) == []
    cfg = with_overrides(GenerateConfig(prompt="a red mug"), ["nerf.blob_density=-1.5", "render_scale=0.5",
                                                              "seed=7", "representation=gaussians"])
    cfg = replace(cfg, progress=False, steps=None, lr=0.0125)
    options = config_to_options(cfg)
    assert "--nerf-blob-density=-1.5" in options and "--no-progress" in options
    ns = build_parser(["generate"]).parse_args(["generate", "a red mug", *options])
    assert config_from_args(GenerateConfig, ns) == cfg
    assert "--seed" not in config_to_options(cfg, skip=("seed",))
    # tuples are comma-separated
    from dreamlift.evaluate.runner import EvalConfig

    ev = replace(EvalConfig(), only=("a-red-mug", "a-tree"))
    assert config_to_options(ev) == ["--only", "a-red-mug,a-tree"]
    assert config_from_args(EvalConfig, build_parser(["eval"]).parse_args(["eval", *config_to_options(ev)])) == ev
