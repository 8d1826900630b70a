"""A generate run on CUDA (skipped without CUDA): its checkpoint resumes on CUDA, with the run's CPU generator and
its render generator restored, and on the CPU (--device is resumable); the phase timers settle CUDA events.
Uses the tiny random Stable Diffusion folder of the unit tests, in fp16 on the GPU (the backend's CUDA default)."""

import pytest
import torch

from dreamlift.generate import GenerateConfig, Generator, PhaseClock
from dreamlift.guidance.objectives import SDSObjective
from dreamlift.guidance.stable_diffusion import StableDiffusionGuidance

from ..unit.guidance.tiny import build_sd

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


@pytest.fixture(scope="module")
def sd_folder(tmp_path_factory):
    return build_sd(tmp_path_factory.mktemp("sd"))


def _generator(sd_folder, device):
    cfg = GenerateConfig(prompt="a red mug", backend="stable-diffusion", out="unused", steps=8, num_samples=16,
                         device=device).resolved()
    backend = StableDiffusionGuidance(str(sd_folder), device=device)
    gen = Generator(cfg, SDSObjective(cfg, backend))
    gen.prepare()
    return gen


def test_a_cuda_checkpoint_resumes_on_cuda_exactly_and_on_the_cpu(sd_folder, tmp_path):
    a = _generator(sd_folder, "cuda")
    assert a.render_rng.device.type == "cuda" and a.rng.device.type == "cpu"
    for _ in range(3):
        a.train_step()
    a.save(tmp_path / "ckpt.safetensors")
    rest = [a.train_step()["sds"] for _ in range(3)]

    b = _generator(sd_folder, "cuda")
    b.load(tmp_path / "ckpt.safetensors")
    assert b.step == 3
    assert [b.train_step()["sds"] for _ in range(3)] == pytest.approx(rest, rel=1e-3)

    c = _generator(sd_folder, "cpu")  # the same checkpoint on the CPU: loads, and steps
    c.load(tmp_path / "ckpt.safetensors")
    assert c.step == 3 and c.render_rng is c.rng
    c.train_step()


def test_phase_times_on_cuda_are_the_gpus_and_add_up_to_the_step(sd_folder):
    import time

    gen = _generator(sd_folder, "cuda")
    gen.train_step()
    before = dict(gen.times)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(5):
        gen.train_step()
    torch.cuda.synchronize()
    wall = time.perf_counter() - t0
    total = sum(gen.times.values()) - sum(before.values())
    assert gen.clock.pending == [] and 0.5 * wall < total <= 1.05 * wall


def test_the_clock_waits_for_queued_kernels():
    clock, times = PhaseClock(torch.device("cuda")), {"work": 0.0}
    x = torch.randn(4096, 4096, device="cuda")
    marks = [clock.mark()]
    for _ in range(20):
        x = x @ x / 64
    marks.append(clock.mark())
    clock.add(times, marks, (("work", 0, 1),))
    clock.settle(times, wait=True)
    assert times["work"] > 0 and clock.pending == []
