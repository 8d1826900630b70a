"""image-to-3d's own defaults where they differ from generate's."""

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


def test_the_help_states_image_to_3ds_default(capsys):
    with pytest.raises(SystemExit):
        main(["image-to-3d", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--surface-density X density of the surface (marching cubes, scores; default: 1)" in text
