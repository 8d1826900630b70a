"""A real web splat viewer opens our model.ply: @mkkellogg/gaussian-splats-3d (three.js) in headless Chromium.

The page (tests/js/splat_viewer.html) is served from 127.0.0.1 and driven by Playwright with Debian's
/usr/bin/chromium (software WebGL through SwiftShader). The test asserts that the object's pixels appear:
a red ball of Gaussians shows red pixels in the middle of the frame, and the same file with every Gaussian
made transparent shows none, so the check can fail. Skipped, with the reason, where chromium, playwright or
the npm packages are missing (`.ci/run` installs them).
"""

import functools
import http.server
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

JS = Path(__file__).resolve().parents[2] / "js"
CHROMIUM = Path("/usr/bin/chromium")


def _needs():
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    for pkg in ("three", "@mkkellogg/gaussian-splats-3d"):
        if not (JS / "node_modules" / pkg).is_dir():
            pytest.skip(f"the npm package {pkg} is not installed (npm ci --prefix tests/js)")


def _red_ball(opacity_logit: float):
    from dreamlift.scene.gaussians import Gaussians

    g = torch.Generator().manual_seed(0)
    n = 3000
    d = torch.randn(n, 3, generator=g)
    means = 0.6 * d / d.norm(dim=-1, keepdim=True) * torch.rand(n, 1, generator=g).pow(1 / 3)
    sh = torch.zeros(n, 1, 3)
    sh[:, 0] = torch.tensor([0.9, -0.45, -0.45]) / 0.28209479177387814  # colour (0.95, 0.05, 0.05)
    quats = torch.zeros(n, 4)
    quats[:, 0] = 1
    return Gaussians(means, torch.full((n, 3), np.log(0.04)), quats, torch.full((n,), opacity_logit), sh)


def _screenshot(tmp_path: Path, name: str) -> np.ndarray:
    from PIL import Image
    from playwright.sync_api import sync_playwright

    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    shutil.copy(JS / "splat_viewer.html", site / "index.html")
    if not (site / "node_modules").exists():
        (site / "node_modules").symlink_to(JS / "node_modules")
    handler = functools.partial(_QuietHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                        args=["--use-angle=swiftshader", "--enable-unsafe-swiftshader",
                                              "--no-sandbox"])
            page = browser.new_page(viewport={"width": 320, "height": 240})
            errors = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(f"http://127.0.0.1:{server.server_port}/index.html?ply={name}")
            page.wait_for_function("window.splatState && window.splatState !== 'loading'", timeout=120_000)
            state = page.evaluate("window.splatState")
            assert state == "loaded", (state, errors)
            page.wait_for_timeout(3000)  # the viewer sorts in a worker and draws on the next frames
            page.screenshot(path=str(tmp_path / f"{name}.png"))
            browser.close()
    finally:
        server.shutdown()
    return np.asarray(Image.open(tmp_path / f"{name}.png").convert("RGB")).astype(int)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map, ".js": "text/javascript",
                      ".ply": "application/octet-stream"}

    def log_message(self, *args):
        pass


def _red_pixels(img: np.ndarray) -> int:
    r, g, b = img[..., 0], img[..., 1], img[..., 2]
    return int(((r > 100) & (r > 2 * g) & (r > 2 * b)).sum())


def test_a_web_splat_viewer_shows_the_object_of_our_ply(tmp_path):
    from dreamlift.export.ply import write_ply

    _needs()
    site = tmp_path / "site"
    site.mkdir()
    write_ply(_red_ball(4.0), site / "ball.ply")
    write_ply(_red_ball(-12.0), site / "clear.ply")  # the same Gaussians, transparent
    ball = _screenshot(tmp_path, "ball.ply")
    h, w = ball.shape[:2]
    centre = ball[h // 3: 2 * h // 3, w // 3: 2 * w // 3]
    assert _red_pixels(centre) > 0.5 * centre.shape[0] * centre.shape[1], "no object in the middle of the frame"
    assert _red_pixels(ball[:, :10]) == 0  # the ball does not fill the frame: the left edge is background
    clear = _screenshot(tmp_path, "clear.ply")
    assert _red_pixels(clear) < 20


def test_the_viewer_shows_the_model_ply_of_a_trained_red_mug(tmp_path):
    # Not a constructed ball: Gaussians optimised by the training loop (fitted to the true red mug's renders,
    # the ceiling objective, so a few seconds suffice) and written by the export a run uses.
    from dreamlift.evaluate.ceiling import fit_in_memory
    from dreamlift.evaluate.suite import SUITES
    from dreamlift.generate import GenerateConfig

    _needs()
    prompt = SUITES["core-v1"][0]  # a red mug
    assert prompt.colour == "red"
    torch.manual_seed(0)
    cfg = GenerateConfig(prompt=prompt.prompt, representation="gaussians", progress=False, steps=250)
    cfg.gaussians.count = 1500
    gen = fit_in_memory(cfg, prompt, 250)
    site = tmp_path / "site"
    site.mkdir()
    gen.scene.eval()
    assert gen.scene.export(site) == ["model.ply"]
    shot = _screenshot(tmp_path, "model.ply")
    h, w = shot.shape[:2]
    centre = shot[h // 3: 2 * h // 3, w // 3: 2 * w // 3]
    assert _red_pixels(centre) > 0.3 * centre.shape[0] * centre.shape[1], "the mug is not in the middle of the frame"
    assert _red_pixels(shot[:, :10]) == 0 and _red_pixels(shot[:10]) == 0  # background around it
