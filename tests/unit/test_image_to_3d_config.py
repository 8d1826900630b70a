"""image-to-3d's own defaults where they differ from generate's."""

from pathlib import Path

import pytest

from dreamlift.cli import main
from dreamlift.generate import DEFAULT_SURFACE_DENSITY, GenerateConfig
from dreamlift.image_to_3d import IMAGE_SURFACE_DENSITY, ImageTo3DConfig


@pytest.mark.parametrize("representation", ["nerf", "gaussians"])
def test_the_surface_level_is_image_to_3ds_own_unless_given(tmp_path, representation):
    image = tmp_path / "ref.png"
    image.write_bytes(b"")  # resolved() checks the path only; the image is read later
    assert IMAGE_SURFACE_DENSITY == 1.0
    assert ImageTo3DConfig(image=image, representation=representation).resolved().surface_density == 1.0
    assert ImageTo3DConfig(image=image, representation=representation,
                           surface_density=0.25).resolved().surface_density == 0.25
    # generate keeps its own: 0.35 for the Gaussians' semi-transparent text-to-3D shells
    got = GenerateConfig(prompt="a red mug", representation=representation).resolved().surface_density
    assert got == DEFAULT_SURFACE_DENSITY[representation] == {"nerf": 1.0, "gaussians": 0.35}[representation]


def test_the_gaussians_start_from_silhouettes_in_image_to_3d_and_from_the_ball_in_generate(tmp_path):
    from dataclasses import replace

    from dreamlift.generate import DEFAULT_INIT_SHAPE
    from dreamlift.image_to_3d import IMAGE_INIT_SHAPE
    from dreamlift.scene.gaussians import GaussiansConfig

    image = tmp_path / "ref.png"
    image.write_bytes(b"")
    assert (IMAGE_INIT_SHAPE, DEFAULT_INIT_SHAPE) == ("silhouettes", "ball")
    assert GaussiansConfig().init_shape is None  # unset: each command fills in its own
    image_cfg = ImageTo3DConfig(image=image, representation="gaussians")
    assert image_cfg.resolved().gaussians.init_shape == "silhouettes"
    assert GenerateConfig(prompt="a red mug", representation="gaussians").resolved().gaussians.init_shape == "ball"
    for shape in ("ball", "silhouettes"):  # a given choice is kept by both commands
        g = GaussiansConfig(init_shape=shape)
        assert replace(image_cfg, gaussians=g).resolved().gaussians.init_shape == shape
        assert GenerateConfig(prompt="a red mug", gaussians=g).resolved().gaussians.init_shape == shape


def test_the_gaussians_positions_move_at_each_commands_own_rate(tmp_path):
    """Generate's positions get 6x --lr, image-to-3d's keep DreamGaussian's 0.1x; a given rate is kept by both,
    and a checkpoint's resolved config holds the number."""
    from dataclasses import replace

    from dreamlift.generate import DEFAULT_POSITION_LR_SCALE
    from dreamlift.image_to_3d import IMAGE_POSITION_LR_SCALE
    from dreamlift.scene.gaussians import GaussiansConfig

    image = tmp_path / "ref.png"
    image.write_bytes(b"")
    assert (DEFAULT_POSITION_LR_SCALE, IMAGE_POSITION_LR_SCALE) == (6.0, 0.1)
    assert GaussiansConfig().position_lr_scale is None  # unset: each command fills in its own
    image_cfg = ImageTo3DConfig(image=image, representation="gaussians")
    assert image_cfg.resolved().gaussians.position_lr_scale == 0.1
    assert GenerateConfig(prompt="a red mug", representation="gaussians").resolved().gaussians.position_lr_scale == 6.0
    for rate in (0.1, 2.5):
        g = GaussiansConfig(position_lr_scale=rate)
        assert replace(image_cfg, gaussians=g).resolved().gaussians.position_lr_scale == rate
        assert GenerateConfig(prompt="a red mug", gaussians=g).resolved().gaussians.position_lr_scale == rate


def test_the_help_states_image_to_3ds_default(capsys):
    with pytest.raises(SystemExit):
        main(["image-to-3d", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--surface-density X density of the surface (marching cubes, scores; default: 1)" in text


def test_an_image_suites_ceiling_takes_image_to_3ds_level_and_steps_and_text_runs_generates(tmp_path, monkeypatch):
    from dreamlift.evaluate.runner import EvalConfig, reference_path
    from dreamlift.evaluate.suite import get_suite

    monkeypatch.chdir(tmp_path)
    prompt = get_suite("image-v1")[0]
    reference_path(Path("unused"), prompt).parent.mkdir(parents=True)
    reference_path(Path("unused"), prompt).write_bytes(b"")
    levels, steps = {}, {}
    for mode in ("image", "ceiling", "text"):
        cfg = EvalConfig(suite="image-v1", representation="gaussians", ceiling=mode == "ceiling",
                         text=mode == "text", out=Path("unused"))
        levels[mode] = cfg.generate_config(prompt).resolved().surface_density
        steps[mode] = cfg.generate_config(prompt).resolved().steps
    assert levels == {"image": 1.0, "ceiling": 1.0, "text": 0.35}
    # the ceiling fits at image-to-3d's Gaussian step count, the text baseline runs generate's
    assert steps == {"image": 500, "ceiling": 500, "text": 1000}
    core = EvalConfig(suite="core-v1", representation="gaussians", ceiling=True, out=Path("unused"))
    assert core.generate_config(get_suite("core-v1")[0]).resolved().surface_density == 0.35
    assert core.generate_config(get_suite("core-v1")[0]).resolved().steps == 1000
    given = EvalConfig(suite="image-v1", representation="gaussians", ceiling=True, out=Path("unused"), steps=30)
    assert given.generate_config(prompt).resolved().steps == 30
    overridden = EvalConfig(suite="image-v1", representation="gaussians", ceiling=True, out=Path("unused"),
                            set=("surface_density=0.5",))
    assert overridden.generate_config(prompt).resolved().surface_density == 0.5


@pytest.mark.parametrize("preset, text_steps, image_steps", [("fast", 1000, 500), ("quality", 1500, 1500)])
def test_the_gaussians_step_count_is_each_commands_own(tmp_path, preset, text_steps, image_steps):
    """Generate's fast Gaussians run 1000 steps (core-v1's evidence), image-to-3d's keep the 500 image-v1 was
    measured at; the NeRF runs the preset's in both, and a given --steps is kept by both."""
    from dreamlift.image_to_3d import IMAGE_GAUSSIAN_STEPS

    image = tmp_path / "ref.png"
    image.write_bytes(b"")
    assert IMAGE_GAUSSIAN_STEPS[preset] == image_steps
    assert GenerateConfig(prompt="a red mug", representation="gaussians", preset=preset).resolved().steps == text_steps
    assert ImageTo3DConfig(image=image, representation="gaussians", preset=preset).resolved().steps == image_steps
    nerf = GenerateConfig(prompt="a red mug", preset=preset).resolved().steps
    assert ImageTo3DConfig(image=image, representation="nerf", preset=preset).resolved().steps == nerf
    assert ImageTo3DConfig(image=image, representation="gaussians", preset=preset, steps=7).resolved().steps == 7
