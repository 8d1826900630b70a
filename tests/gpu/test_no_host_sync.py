"""An SDS step on CUDA never makes the host wait for the GPU (skipped without CUDA).

PyTorch's sync debug mode reports every operation that blocks the host until queued kernels finish (reading a
tensor's value, a data-dependent shape, a copy from pageable memory). A step of the `sd` preset (hash grid,
learned background, the Stable Diffusion backend in fp16: the tiny random pipeline of the unit tests) runs
under it; the steps' losses are read afterwards, once (``Generator.settle``). The compacted render
(``--nerf-compact on``) is the one expected exception: it reads how many samples are occupied (the check that
the test sees syncs at all).
"""

import warnings

import pytest
import torch

from dreamlift.config import with_overrides
from dreamlift.generate import GenerateConfig, Generator
from dreamlift.guidance.objectives import SDSObjective
from dreamlift.guidance.stable_diffusion import StableDiffusionGuidance

from ..unit.guidance.tiny import build_sd

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


@pytest.fixture(scope="module")
def sd_folder(tmp_path_factory):
    return build_sd(tmp_path_factory.mktemp("sd"))


def _syncs(sd_folder, compact: str, background: str = "learned") -> list[str]:
    cfg = with_overrides(GenerateConfig(prompt="a red mug", backend="stable-diffusion", preset="sd", out="unused",
                                        steps=40, device="cuda", background=background, occupancy_every=4),
                         ["nerf.hash_table_log2=14", f"nerf.compact={compact}"]).resolved()
    backend = StableDiffusionGuidance(str(sd_folder), device="cuda")
    gen = Generator(cfg, SDSObjective(cfg, backend))
    gen.prepare()
    gen.step = 20  # mid-run: every shading drawn, levels being added, an occupancy update among the steps below
    gen.train_step()  # the first step's one-off work (allocations, kernel choices)
    torch.cuda.synchronize()
    seen = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            for _ in range(6):
                gen.train_step(settle=False)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    for w in caught:
        if "synchroniz" in str(w.message).lower():
            seen.append(f"{w.filename}:{w.lineno}: {str(w.message).splitlines()[0]}")
    history = gen.history  # the steps' losses, read once here
    assert [r["step"] for r in history] == list(range(21, 28)) and all(torch.isfinite(torch.tensor(r["sds"]))
                                                                      for r in history)
    return seen


def test_an_sds_step_on_cuda_never_waits_for_the_gpu(sd_folder):
    seen = _syncs(sd_folder, "auto")  # auto: every sample, masked, on CUDA
    print("\n".join(["host syncs seen:", *seen]) if seen else "no host sync")
    assert seen == []


def test_with_a_random_background_too(sd_folder):
    assert _syncs(sd_folder, "off", background="random") == []


def test_the_compacted_render_is_the_one_that_waits(sd_folder):
    seen = _syncs(sd_folder, "on")  # the sample count, forward (the gather) and backward (its scatter)
    print("\n".join(["host syncs seen (compact on):", *seen]))
    assert seen
