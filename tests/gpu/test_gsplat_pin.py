"""gsplat's CUDA rasteriser, dreamlift's fast path on CUDA, renders what the PyTorch rasteriser renders.

The PyTorch path is the reference (its own tests check it against closed forms). Same scene, same cameras,
every shading, images and gradients compared. Skipped without CUDA or without gsplat installed.
"""

import importlib.util

import pytest
import torch

from dreamlift.render import splat
from dreamlift.render.camera import Camera, CameraDistribution, LightDistribution
from dreamlift.scene.gaussians import Gaussians, GaussiansConfig

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
              pytest.mark.skipif(importlib.util.find_spec("gsplat") is None, reason="needs gsplat installed")]


def _scene():
    g = torch.Generator().manual_seed(0)
    gs = Gaussians.initialise(GaussiansConfig(count=3000, sh_degree=1, init_opacity=0.3), generator=g)
    with torch.no_grad():
        gs.sh.add_(0.3 * torch.randn(gs.sh.shape, generator=g))
        gs.log_scales.add_(0.3 * torch.randn(gs.log_scales.shape, generator=g))
        gs.quats.copy_(torch.randn(gs.quats.shape, generator=g))
    return gs.cuda()


def _on_cuda(sample):
    light = LightDistribution().sample(sample, generator=torch.Generator().manual_seed(4))
    c = sample.camera
    cams = Camera(c.c2w.cuda(), c.fov_y_deg.cuda(), c.height, c.width)
    return cams, type(light)(light.position.cuda(), light.ambient.cuda())


def _render(gs, cams, light, shading, use_gsplat, textureless_albedo="white"):
    splat.USE_GSPLAT = use_gsplat
    try:
        return splat.rasterize(gs.means, gs.log_scales, gs.quats, gs.opacity_logits, gs.sh, cams, light, shading,
                               want_normals=True, textureless_albedo=textureless_albedo)
    finally:
        splat.USE_GSPLAT = True


@pytest.mark.parametrize("shading, plain", [("albedo", "white"), ("lambertian", "white"),
                                            ("textureless", "white"), ("textureless", "mean")])
def test_gsplat_renders_what_the_pytorch_rasteriser_renders(shading, plain):
    gs = _scene()
    sample = CameraDistribution().sample(3, generator=torch.Generator().manual_seed(1), height=64)
    cams, light = _on_cuda(sample)
    ref = _render(gs, cams, light, shading, False, plain)
    fast = _render(gs, cams, light, shading, True, plain)
    assert fast.weights.numel() == 0  # the gsplat path really ran (it keeps no per-pair weights)
    for name in ("rgb", "opacity", "depth", "normal"):
        a, b = getattr(ref, name), getattr(fast, name)
        assert (a - b).abs().max().item() < 2e-3, name


def test_gsplat_gradients_match_the_pytorch_rasteriser():
    gs = _scene()
    sample = CameraDistribution().sample(2, generator=torch.Generator().manual_seed(2), height=48)
    cams, light = _on_cuda(sample)
    target = torch.rand(2, 3, 48, 48, generator=torch.Generator().manual_seed(3)).cuda()
    grads = []
    for use in (False, True):
        gs.zero_grad()
        out = _render(gs, cams, light, "lambertian", use)
        ((out.rgb - target) ** 2).mean().backward()
        grads.append({n: p.grad.clone() for n, p in gs.named_parameters()})
    for name in grads[0]:
        ref, fast = grads[0][name], grads[1][name]
        scale = ref.abs().max().item() + 1e-12
        assert (ref - fast).abs().max().item() / scale < 1e-2, name
