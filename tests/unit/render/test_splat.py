"""The Gaussian rasteriser on known answers: the analytic projected Gaussian, occlusion, exact gradients,
bounded opacity, shading formulas, and silhouettes of world objects that match the sphere tracer's."""

import math

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from dreamlift.render.camera import Camera, CameraDistribution, CameraSample, Light, camera_rays, look_at
from dreamlift.render.splat import SH_C0, covariance, eval_sh, project_gaussians, rasterize, render_gaussians
from dreamlift.scene.gaussians import Gaussians, GaussiansConfig
from dreamlift.world.objects import sdf_gradient
from dreamlift.world.render import trace_geometry
from dreamlift.world.shapes import get_object


def _camera(eye, size=(48, 40), fov=45.0):
    c2w = look_at(torch.tensor([eye], dtype=torch.float32))
    return Camera(c2w, torch.tensor([fov]), *size)


def _logit(p):
    return math.log(p / (1 - p))


def _dc(rgb):
    """The degree-0 coefficient whose colour 0.5 + C0 f is ``rgb``, (3,) -> (1, 3)."""
    return ((torch.tensor(rgb) - 0.5) / SH_C0)[None]


def _pixel_of(camera: Camera):
    """The pinhole projection x -> (u, v) in pixels, written from camera.py's conventions (not splat.py's)."""
    c2w = camera.c2w[0].double()
    H, W = camera.height, camera.width
    f = (H / 2) / math.tan(math.radians(float(camera.fov_y_deg[0])) / 2)

    def project(x):
        p = c2w[:3, :3].T @ (x - c2w[:3, 3])  # camera frame, looking along -z
        return torch.stack([W / 2 + f * p[0] / -p[2], H / 2 - f * p[1] / -p[2]])

    return project


def test_the_independent_projection_agrees_with_camera_rays():
    cam = _camera((1.2, 0.9, 2.6))
    project = _pixel_of(cam)
    o, d = camera_rays(cam)
    for i, j in [(0, 0), (5, 31), (47, 39), (20, 7)]:
        x = o[0, i, j].double() + 2.5 * d[0, i, j].double()
        assert torch.allclose(project(x), torch.tensor([j + 0.5, i + 0.5], dtype=torch.float64), atol=1e-4)


def test_one_gaussian_renders_the_analytic_projected_gaussian():
    cam = _camera((1.2, 0.9, 2.6))  # an oblique view: W is a general rotation
    mean = torch.tensor([0.25, -0.15, 0.1])  # off the optical axis: J's off-diagonal terms matter
    scales = np.array([0.16, 0.05, 0.3])
    quat = np.array([0.8, 0.3, -0.4, 0.33])
    quat = quat / np.linalg.norm(quat)
    opacity = 0.8

    # Independently: Sigma from scipy's rotation, J W by autograd of the pinhole projection.
    rot = Rotation.from_quat(quat, scalar_first=True).as_matrix()
    sigma = torch.from_numpy(rot @ np.diag(scales**2) @ rot.T)
    project = _pixel_of(cam)
    mean64 = mean.double()
    jw = torch.autograd.functional.jacobian(project, mean64)  # (2, 3) = J W
    cov2d = jw @ sigma @ jw.T + 0.3 * torch.eye(2, dtype=torch.float64)
    conic = torch.linalg.inv(cov2d)
    u, v = project(mean64)
    radius = math.ceil(3 * math.sqrt(float(torch.linalg.eigvalsh(cov2d)[-1])))
    H, W = cam.height, cam.width
    jj, ii = torch.meshgrid(torch.arange(W, dtype=torch.float64) + 0.5, torch.arange(H, dtype=torch.float64) + 0.5,
                            indexing="xy")
    d = torch.stack([jj - u, ii - v], -1)  # (H, W, 2)
    expected = opacity * torch.exp(-0.5 * torch.einsum("hwi,ij,hwj->hw", d, conic, d))
    footprint = ((jj - u).abs() <= radius) & ((ii - v).abs() <= radius)
    shows = footprint & (expected >= 1 / 255)

    out = rasterize(mean[None], torch.from_numpy(np.log(scales)).float()[None], torch.from_numpy(quat).float()[None],
                    torch.tensor([_logit(opacity)]), torch.zeros(1, 1, 3), cam)
    alpha = out.opacity[0, 0].double()
    assert shows.sum() > 100 and (~shows).sum() > 100  # a real footprint, not the whole image
    assert torch.allclose(alpha[shows], expected[shows], atol=1e-4)
    assert (alpha[~shows] == 0).all()
    # the projection itself, against the same independent numbers
    proj = project_gaussians(mean[None], covariance(torch.from_numpy(np.log(scales)).float()[None],
                                                    torch.from_numpy(quat).float()[None]), cam)
    assert torch.allclose(proj.means2d[0, 0].double(), torch.stack([u, v]), atol=1e-4)
    c = proj.conics[0, 0].double()
    assert torch.allclose(torch.stack([c[0], c[1], c[2]]), torch.stack([conic[0, 0], conic[0, 1], conic[1, 1]]),
                          rtol=1e-4, atol=1e-6)
    assert int(proj.radii[0, 0]) == radius


def _two_on_axis(z_red, z_blue):
    means = torch.tensor([[0.0, 0.0, z_red], [0.0, 0.0, z_blue]])
    sh = torch.cat([_dc((0.9, 0.1, 0.1)), _dc((0.1, 0.1, 0.9))])[:, None]  # (2, 1, 3)
    quats, logits = torch.tensor([[1.0, 0, 0, 0]] * 2), torch.full((2,), _logit(0.95))
    return means, torch.full((2, 3), math.log(0.25)), quats, logits, sh


@pytest.mark.parametrize("z_red, z_blue, front", [(0.5, -0.5, "red"), (-0.5, 0.5, "blue")])
def test_a_nearer_opaque_gaussian_hides_a_farther_one(z_red, z_blue, front):
    cam = _camera((0.0, 0.0, 3.0), size=(33, 33))  # odd size: the centre pixel's ray is the optical axis
    out = rasterize(*_two_on_axis(z_red, z_blue), cam)
    pixel = out.rgb[0, :, 16, 16]
    red, blue = torch.tensor([0.9, 0.1, 0.1]), torch.tensor([0.1, 0.1, 0.9])
    near, far = (red, blue) if front == "red" else (blue, red)
    # alpha 0.95 at the centres: 0.95 near + 0.05 * 0.95 far + 0.05^2 white
    assert torch.allclose(pixel, 0.95 * near + 0.0475 * far + 0.0025, atol=1e-5)
    assert (pixel - far).abs().max() > 0.5


def test_gradients_match_finite_differences():
    cam = CameraSample.from_spherical(torch.tensor([20.0]), torch.tensor([15.0]), torch.tensor([3.0]),
                                      torch.tensor([40.0]), 10, 12).camera
    light = Light(torch.tensor([[2.0, 3.0, 2.5]]), torch.tensor([0.3]))
    g = torch.Generator().manual_seed(3)
    dt = torch.float64
    means = (torch.rand(3, 3, generator=g, dtype=dt) - 0.5) * 0.5
    log_scales = torch.log(torch.tensor([[0.3, 0.15, 0.08], [0.2, 0.35, 0.1], [0.12, 0.25, 0.4]], dtype=dt))
    quats = torch.randn(3, 4, generator=g, dtype=dt)
    logits = torch.tensor([0.5, 1.5, -0.5], dtype=dt)
    sh = torch.randn(3, 4, 3, generator=g, dtype=dt) * 0.3  # degree 1: view-dependent colour
    inputs = [t.requires_grad_() for t in (means, log_scales, quats, logits, sh)]

    def render(*params):
        out = rasterize(*params, cam, light, "lambertian")
        return torch.cat([out.rgb.flatten(), out.opacity.flatten(), out.depth.flatten(), out.normal.flatten()])

    out = rasterize(*inputs, cam, light, "lambertian")
    assert out.weights.numel() > 50 and (out.opacity > 0.3).any()  # the Gaussians overlap and composite
    assert torch.autograd.gradcheck(render, inputs, eps=1e-6, atol=1e-6, rtol=1e-4)


def test_opacity_never_exceeds_one():
    g = torch.Generator().manual_seed(0)
    n = 400
    means = torch.randn(n, 3, generator=g) * 0.1
    out = rasterize(means, torch.full((n, 3), math.log(0.2)), torch.randn(n, 4, generator=g),
                    torch.full((n,), 6.0), torch.rand(n, 1, 3, generator=g),
                    CameraDistribution().sample(3, g, height=24).camera)
    assert out.opacity.min() >= 0 and out.opacity.max() <= 1
    assert out.opacity.max() > 0.999  # saturated pixels exist: the early stop did the bounding
    assert out.opacity.max() <= 1 - 1e-4 + 1e-6  # 3DGS stops before transmittance drops below 1e-4
    assert (out.weights >= 0).all() and (out.weights <= 0.99 + 1e-6).all()


def _flat_gaussian(z_axis_scale=0.01):
    """A disc at the origin in the xy plane (normal +-z), colour (0.2, 0.6, 0.8), opacity 0.7."""
    return (torch.zeros(1, 3), torch.log(torch.tensor([[0.3, 0.3, z_axis_scale]])), torch.tensor([[1.0, 0, 0, 0]]),
            torch.tensor([_logit(0.7)]), _dc((0.2, 0.6, 0.8))[:, None])


@pytest.mark.parametrize("side", [1.0, -1.0])
def test_shading_normals_and_depth_of_a_disc(side):
    cam = _camera((0.0, 0.0, 3.0 * side), size=(33, 33))
    light = Light(torch.tensor([[3.0, 0.0, 3.0]]), torch.tensor([0.25]))  # 45 degrees off the +z normal
    a, k, alpha = torch.tensor([0.2, 0.6, 0.8]), 0.25, 0.7
    lam = math.cos(math.radians(45)) if side > 0 else 0.0  # seen from behind, the normal turns to -z: unlit
    shade = k + (1 - k) * lam
    lit = rasterize(*_flat_gaussian(), cam, light, "lambertian")
    assert torch.allclose(lit.rgb[0, :, 16, 16], alpha * a * shade + (1 - alpha), atol=1e-5)
    assert torch.allclose(lit.normal[0, :, 16, 16], alpha * torch.tensor([0.0, 0.0, side]), atol=1e-5)
    assert torch.allclose(lit.depth[0, 0, 16, 16], torch.tensor(alpha * 3.0), atol=1e-5)
    plain = rasterize(*_flat_gaussian(), cam, light, "textureless")
    assert torch.allclose(plain.rgb[0, :, 16, 16], torch.full((3,), alpha * shade + (1 - alpha)), atol=1e-5)
    albedo = rasterize(*_flat_gaussian(), cam, light, "albedo", background=torch.tensor([0.0, 0.0, 0.0]))
    assert torch.allclose(albedo.rgb[0, :, 16, 16], alpha * a, atol=1e-5) and albedo.normal is None
    # textureless in one Gaussian's own mean colour is lambertian; in a given colour, that colour lit
    mean = rasterize(*_flat_gaussian(), cam, light, "textureless", textureless_albedo="mean")
    assert torch.allclose(mean.rgb, lit.rgb, atol=1e-6)
    grey = rasterize(*_flat_gaussian(), cam, light, "textureless", textureless_albedo=torch.tensor([0.4, 0.4, 0.4]))
    assert torch.allclose(grey.rgb[0, :, 16, 16], torch.full((3,), alpha * 0.4 * shade + (1 - alpha)), atol=1e-5)


def test_view_dependent_colour_follows_the_degree_one_harmonics():
    means, log_scales, quats, logits, dc = _flat_gaussian()
    sh = torch.zeros(1, 4, 3)
    sh[:, :1] = dc
    sh[0, 2] = torch.tensor([0.2, 0.0, -0.1])  # the z coefficient: Y = C1 z along the view direction
    c1 = 0.4886025119029199
    for side in (1.0, -1.0):  # view direction camera -> Gaussian is -side z
        out = rasterize(means, log_scales, quats, logits, sh, _camera((0.0, 0.0, 3.0 * side), size=(33, 33)),
                        background=torch.zeros(3))
        colour = torch.tensor([0.2, 0.6, 0.8]) + c1 * (-side) * sh[0, 2]
        assert torch.allclose(out.rgb[0, :, 16, 16], 0.7 * colour, atol=1e-5)


def test_spherical_harmonics_are_orthonormal_up_to_degree_three():
    # Gauss-Legendre in cos(theta) x uniform phi integrates the products (degree <= 6) exactly.
    x, w = np.polynomial.legendre.leggauss(8)
    phi = np.arange(16) * 2 * np.pi / 16
    ct, ph = np.meshgrid(x, phi, indexing="ij")
    st = np.sqrt(1 - ct**2)
    dirs = torch.from_numpy(np.stack([st * np.cos(ph), st * np.sin(ph), ct], -1).reshape(-1, 3))
    weights = torch.from_numpy(np.repeat(w, 16) * 2 * np.pi / 16)
    basis = torch.stack([eval_sh(3, torch.eye(16, dtype=torch.float64)[k][None, :, None].expand(len(dirs), 16, 3),
                                 dirs)[:, 0] for k in range(16)])  # (16, M)
    gram = (basis * weights) @ basis.T
    assert torch.allclose(gram, torch.eye(16, dtype=torch.float64), atol=1e-10)


def test_gaussians_behind_the_camera_are_culled_and_pairs_are_sparse():
    cam = _camera((0.0, 0.0, 3.0), size=(32, 32))
    behind = rasterize(torch.tensor([[0.0, 0.0, 4.0]]), torch.zeros(1, 3), torch.tensor([[1.0, 0, 0, 0]]),
                       torch.tensor([5.0]), torch.zeros(1, 1, 3), cam)
    assert behind.weights.numel() == 0 and (behind.rgb == 1).all() and (behind.opacity == 0).all()
    n, g = 2000, torch.Generator().manual_seed(1)
    out = rasterize(torch.rand(n, 3, generator=g) - 0.5, torch.full((n, 3), math.log(0.01)),
                    torch.randn(n, 4, generator=g), torch.zeros(n), torch.zeros(n, 1, 3), cam)
    assert 0 < out.weights.numel() < n * 32 * 32 / 50  # small Gaussians touch few pixels each


def test_render_gaussians_renders_the_container_and_reaches_every_parameter():
    g = Gaussians.initialise(GaussiansConfig(count=500, sh_degree=1), torch.Generator().manual_seed(0))
    cams = CameraDistribution().sample(2, torch.Generator().manual_seed(0), height=24)
    light = Light(cams.camera.position, torch.full((2,), 0.3))
    out = render_gaussians(g, cams.camera, light, "lambertian")
    same = rasterize(g.means, g.log_scales, g.quats, g.opacity_logits, g.sh, cams.camera, light, "lambertian")
    assert torch.equal(out.rgb, same.rgb) and out.rgb.shape == (2, 3, 24, 24) and out.depth.shape == (2, 1, 24, 24)
    (out.rgb.mean() + out.depth.mean()).backward()
    for name, p in g.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def _disc_quats(normals):
    """Quaternions (w first) turning +z onto each unit normal, (N, 3) -> (N, 4)."""
    z = torch.tensor([0.0, 0.0, 1.0]).expand_as(normals)
    q = torch.cat([1 + (z * normals).sum(-1, keepdim=True), torch.linalg.cross(z, normals)], -1)
    return q / q.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def _surface_discs(obj, n, generator, mirror=False):
    """Flat Gaussians tangent to the surface, each as wide as its spacing, opacity 0.1 (DreamGaussian's start)."""
    pts = obj.surface_samples(n, generator)
    normals = sdf_gradient(obj.sdf, pts)
    normals = normals / normals.norm(dim=-1, keepdim=True)
    if mirror:
        flip = torch.tensor([-1.0, 1.0, 1.0])
        pts, normals = pts * flip, normals * flip
    spacing = torch.cdist(pts, pts).topk(4, largest=False).values[:, 1:].pow(2).mean(1).sqrt()  # (N,)
    log_scales = torch.stack([spacing, spacing, 0.05 * spacing], -1).log()
    return pts, log_scales, _disc_quats(normals), torch.full((n,), _logit(0.1)), torch.zeros(n, 1, 3)


def _iou(a, b):
    return float((a & b).sum() / (a | b).sum())


def test_gaussians_on_a_surface_match_the_tracer_and_their_mirror_image_does_not():
    mug = get_object("mug", "red")  # handle on +x: its mirror image is another shape
    cams = CameraDistribution().sample(4, torch.Generator().manual_seed(0), height=64).camera
    truth = trace_geometry(mug.shape, cams).mask  # (4, 64, 64)
    ious = []
    for mirror in (False, True):
        out = rasterize(*_surface_discs(mug, 4000, torch.Generator().manual_seed(0), mirror), cams)
        ious.append(_iou(out.opacity[:, 0] > 0.5, truth))
    assert ious[0] >= 0.9, ious
    assert ious[1] < 0.8, ious


def test_the_opencv_cameras_for_gsplat_project_as_ours():
    # The CUDA fast path hands gsplat OpenCV cameras; on any machine, they must put a centre where ours do.
    from dreamlift.render.splat import opencv_cameras

    sample = CameraDistribution().sample(4, generator=torch.Generator().manual_seed(0), height=40, width=56)
    means = torch.rand(50, 3, generator=torch.Generator().manual_seed(1)) - 0.5
    proj = project_gaussians(means, torch.eye(3).expand(50, 3, 3) * 1e-4, sample.camera)
    viewmats, Ks = opencv_cameras(sample.camera, means)
    cam = (viewmats[:, None, :3, :3] @ means[None, :, :, None])[..., 0] + viewmats[:, None, :3, 3]  # (B, N, 3)
    assert (cam[..., 2] > 0).all()  # in front: OpenCV's z looks forward
    pix = (Ks[:, None] @ cam[..., None])[..., 0]
    uv = pix[..., :2] / pix[..., 2:]
    assert torch.allclose(uv, proj.means2d, atol=1e-4)
    assert torch.allclose(cam[..., 2], proj.depths, atol=1e-5)
