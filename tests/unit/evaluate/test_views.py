"""PSNR and SSIM against closed forms and scikit-image; held-out views of the true object score perfectly."""

import math

import pytest
import torch

from dreamlift.evaluate.views import held_out_cameras, novel_view_scores, psnr, ssim


def test_psnr_closed_form():
    a = torch.zeros(2, 3, 8, 8)
    b = a + torch.tensor([0.1, 0.01])[:, None, None, None]
    torch.testing.assert_close(psnr(a, b), torch.tensor([20.0, 40.0]), atol=1e-4, rtol=0)


def test_ssim_matches_scikit_image():
    metrics = pytest.importorskip("skimage.metrics")
    g = torch.Generator().manual_seed(0)
    a = torch.rand(3, 3, 32, 32, generator=g)
    b = (a + 0.1 * torch.randn(3, 3, 32, 32, generator=g)).clamp(0, 1)
    b[1] = a[1] * 0.5 + 0.25  # a contrast change
    b[2] = a[2]  # identical: 1
    ours = ssim(a, b)
    for i in range(3):
        ref = metrics.structural_similarity(a[i].numpy(), b[i].numpy(), channel_axis=0, data_range=1.0,
                                            gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
        assert abs(float(ours[i]) - ref) < 1e-5, (i, float(ours[i]), ref)
    assert float(ours[2]) == pytest.approx(1.0)


def test_held_out_cameras_leave_the_reference_out():
    cams = held_out_cameras(20.0, n=8)
    assert cams.azimuth_deg.tolist() == pytest.approx([20.0 + 45.0 * k for k in range(1, 8)])


def test_the_true_object_scores_high_and_a_wrong_one_low():
    from dreamlift.world import get_object
    from dreamlift.world.render import render_object

    class TruthScene(torch.nn.Module):  # renders the world object itself: the perfect result
        def __init__(self, obj):
            super().__init__()
            self.obj = obj

        def render(self, camera, light, shading):
            from types import SimpleNamespace

            return SimpleNamespace(rgb=render_object(self.obj, camera, light).rgb.permute(0, 3, 1, 2))

    mug = get_object("mug", "yellow")
    right = novel_view_scores(TruthScene(mug), mug, 0.0, n=4, size=32)
    assert right["ssim"] == pytest.approx(1.0) and right["psnr"] > 100 and right["views"] == 3
    wrong = novel_view_scores(TruthScene(get_object("hat", "blue")), mug, 0.0, n=4, size=32)
    assert wrong["psnr"] < 20 and wrong["ssim"] < 0.9 and math.isfinite(wrong["psnr"])
