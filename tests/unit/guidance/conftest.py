"""Session-wide tiny diffusers folders (see tiny.py) and the backends loaded from them."""

import pytest

from .tiny import build_if, build_sd


@pytest.fixture(scope="session")
def sd_folder(tmp_path_factory):
    return build_sd(tmp_path_factory.mktemp("sd-eps"))


@pytest.fixture(scope="session")
def sd_v_folder(tmp_path_factory):
    return build_sd(tmp_path_factory.mktemp("sd-v"), prediction_type="v_prediction")


@pytest.fixture(scope="session")
def if_folder(tmp_path_factory):
    return build_if(tmp_path_factory.mktemp("if"))


@pytest.fixture(scope="session")
def sd(sd_folder):
    from dreamlift.guidance.stable_diffusion import StableDiffusionGuidance

    return StableDiffusionGuidance(str(sd_folder))


@pytest.fixture(scope="session")
def deepfloyd(if_folder):
    from dreamlift.guidance.deepfloyd import DeepFloydGuidance

    return DeepFloydGuidance(str(if_folder))
