"""`dreamlift app` served on 127.0.0.1 and used as people use it: in a real browser (Debian's headless Chromium
driven by Playwright, WebGL through SwiftShader) and through gradio_client's named endpoint /generate.

The browser test types a prompt, runs a few steps, waits for the result and checks that the 3D viewer's canvas
shows the object (enough pixels that differ from its white background),
that the download links serve files trimesh loads, and that an empty prompt shows an error in the page. Another
chooses a picture in the page's upload widget and gets its object (image to 3D)."""

import contextlib
import io
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from dreamlift.prior.model import SHIPPED_WEIGHTS

from ._net import free_port

pytestmark = pytest.mark.skipif(not (SHIPPED_WEIGHTS / "prior.safetensors").exists(), reason="no shipped prior")

CHROMIUM = Path("/usr/bin/chromium")
TINY = ("steps=4,render_scale=0.5,num_samples=16,mesh_resolution=40,video_frames=4,video_resolution=32,"
        "area_samples=1,checkpoint_every=2")
CODE = "import sys; from dreamlift.cli import main; sys.exit(main(sys.argv[1:]))"


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    pytest.importorskip("gradio", reason="gradio is not installed (pip install 'dreamlift[app]')")
    outputs = tmp_path_factory.mktemp("app") / "outputs"
    port = free_port()
    log = open(outputs.parent / "app.log", "w")
    proc = subprocess.Popen([sys.executable, "-c", CODE, "app", "--port", str(port), "--outputs", str(outputs),
                             "--preview-every", "0.5", "--set", TINY], stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"})
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.time() + 180
        while True:
            try:
                with urllib.request.urlopen(url, timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                raise AssertionError(f"the app did not start: {(outputs.parent / 'app.log').read_text()[-2000:]}")
            time.sleep(0.5)
        yield url, outputs
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def test_the_app_binds_localhost_by_default():
    from dreamlift.app import AppConfig

    assert AppConfig().host == "127.0.0.1"


def test_generate_through_gradio_client(app_url):
    import trimesh
    from gradio_client import Client

    url, outputs = app_url
    client = Client(url, verbose=False)
    status, preview, glb, ply, video, views, files, gallery = client.predict("a red mug", api_name="/generate")
    assert status.startswith("**Done**"), status
    mesh = trimesh.load(glb, force="mesh")
    assert len(mesh.faces) > 50
    names = sorted(Path(f).name for f in files)
    assert {"model.glb", "model.obj", "turntable.mp4", "views.png", "metrics.json"} <= set(names)
    (run,) = [p for p in outputs.iterdir() if p.name.startswith("a-red-mug")]
    assert json.loads((run / "config.json").read_text())["steps"] == 4  # the app's --set
    assert not (run / "progress.json").exists()  # a watcher's files are not outputs
    # an empty prompt is refused with a message, not a traceback
    status = client.predict("   ", api_name="/generate")[0]
    assert status == "**Error:** the prompt is empty"


def test_image_to_3d_through_gradio_client(app_url, tmp_path):
    """A picture uploaded to /generate runs image-to-3d with the shipped view-conditioned prior; the upload is kept
    for the run's resume; a picture with no object on it is refused in one line, with nothing written."""
    import trimesh
    from gradio_client import Client, handle_file
    from PIL import Image

    from dreamlift.evaluate.suite import SuitePrompt, render_reference

    url, outputs = app_url
    picture = tmp_path / "yellow mug.png"
    render_reference(SuitePrompt("a yellow mug", "mug", "yellow", (0.0, 15.0)), size=64).convert("RGBA").save(picture)
    client = Client(url, verbose=False)
    status, _, glb, *_ = client.predict("", image=handle_file(str(picture)), api_name="/generate")
    assert status.startswith("**Done**"), status
    assert len(trimesh.load(glb, force="mesh").faces) > 50
    (run,) = [p for p in outputs.iterdir() if p.name.startswith("yellow-mug-3d")]
    kept = Path(json.loads((run / "config.json").read_text())["image"])
    assert kept.parent == outputs / ".uploads" and kept.read_bytes() == picture.read_bytes()  # as uploaded, alpha kept
    assert json.loads((run / "metrics.json").read_text())["backend"] == "novel-view"
    blank = tmp_path / "blank.png"
    Image.new("RGB", (64, 64), "white").save(blank)
    before = sorted(p.name for p in outputs.iterdir())
    status = client.predict("", image=handle_file(str(blank)), api_name="/generate")[0]
    assert status.startswith("**Error:**") and "\n" not in status, status
    assert sorted(p.name for p in outputs.iterdir()) == before


@contextlib.contextmanager
def _browser(url: str, height: int = 1400):
    """The app's page in Debian's headless Chromium (WebGL through SwiftShader): (playwright's expect, the page,
    the page errors it logged)."""
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    sync = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    with sync.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                    args=["--use-angle=swiftshader", "--enable-unsafe-swiftshader", "--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": height})
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(url)
            yield sync.expect, page, errors
        finally:
            browser.close()


def _viewer_pixels(page, viewer: str = "#model", settle_ms: int = 4000) -> np.ndarray:
    from PIL import Image

    canvas = page.locator(f"{viewer} canvas").first
    canvas.wait_for(timeout=120_000)
    page.wait_for_timeout(settle_ms)  # the viewer loads its file and draws
    return np.asarray(Image.open(io.BytesIO(canvas.screenshot())).convert("RGB")).astype(int)


def _object_pixels(img: np.ndarray) -> int:
    """Pixels that are neither the viewer's white background nor near it."""
    return int((np.abs(img - 255).sum(-1) > 60).sum())


def test_the_app_in_a_real_browser(app_url, tmp_path):
    import trimesh

    url, outputs = app_url
    with _browser(url) as (expect, page, errors):
        page.locator("#prompt textarea").fill("")
        page.locator("#run").click()
        expect(page.locator("#status")).to_contain_text("Error: the prompt is empty", timeout=60_000)

        page.locator("#prompt textarea").fill("a blue chair")
        page.locator("#run").click()
        expect(page.locator("#status")).to_contain_text("Step", timeout=240_000)  # progress streams in
        expect(page.locator("#status")).to_contain_text("Done", timeout=300_000)
        img = _viewer_pixels(page)
        page.screenshot(path=str(tmp_path / "app.png"), full_page=True)
        assert img.shape[0] > 100 and _object_pixels(img) > 0.005 * img.shape[0] * img.shape[1], \
            (_object_pixels(img), errors)

        links = page.locator("#files a[href]")
        hrefs = {links.nth(i).get_attribute("download"): links.nth(i).get_attribute("href")
                 for i in range(links.count())}
        assert {"model.glb", "model.obj", "turntable.mp4"} <= set(hrefs), hrefs
        for name in ("model.glb", "model.obj"):
            href = hrefs[name]
            body = page.request.get(href if href.startswith("http") else url.rstrip("/") + href).body()
            mesh = trimesh.load(io.BytesIO(body), file_type=name.split(".")[1], force="mesh")
            assert len(mesh.faces) > 50, name
        assert page.locator("#gallery img").count() >= 1  # the finished run is in the gallery


def test_cancel_in_the_browser_keeps_a_checkpoint_that_resumes(app_url):
    """Cancel stops a long run at its next step; its checkpoint stays in the staging folder, and the command the
    page prints (the app's settings included) continues it from the command line."""
    import shlex

    from dreamlift.generate import read_state_step
    from dreamlift.runfolder import RunFolder

    url, outputs = app_url
    with _browser(url) as (expect, page, _):
        page.locator("#prompt textarea").fill("a green table")
        page.locator("#steps input").fill("100000")
        page.locator("#run").click()
        expect(page.locator("#status")).to_contain_text("Step", timeout=240_000)
        page.locator("#cancel").click()
        expect(page.locator("#status")).to_contain_text("Cancelled", timeout=180_000)
        command = page.locator("#status code").inner_text()
    argv = shlex.split(command)
    assert argv[:3] == ["dreamlift", "generate", "a green table"] and argv[-1] == "--resume", command
    out = Path(argv[argv.index("--out") + 1])
    assert out.parent == outputs and out.name.startswith("a-green-table")
    stage = RunFolder(out).stage  # a cancelled run is only in its staging folder: OUT is not made
    saved = read_state_step(stage / "checkpoint.safetensors")
    assert 0 < saved < 100000
    assert not (out / "metrics.json").exists()
    assert "--render-scale" in argv and "--steps" in argv  # the app's --set and the page's steps
    # continue it a little further: a later --steps wins over the printed one
    proc = subprocess.run([sys.executable, "-c", CODE, *argv[1:], "--steps", str(saved + 2), "--no-progress"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads((out / "metrics.json").read_text())["steps"] == saved + 2
    assert not stage.exists()


def test_a_gaussian_run_shows_its_splats_in_the_browser(app_url):
    """Representation gaussians: the second viewer opens the run's 3DGS model.ply (gradio's splat viewer) and
    draws it, beside the mesh in the first."""
    url, outputs = app_url
    with _browser(url, height=1600) as (expect, page, errors):
        page.locator("#representation input").click()
        page.get_by_role("option", name="gaussians").click()
        page.locator("#prompt textarea").fill("a yellow mushroom")
        page.locator("#run").click()
        expect(page.locator("#status")).to_contain_text("Done", timeout=300_000)
        img = _viewer_pixels(page, "#splats", settle_ms=6000)
        # the splat viewer's background is one colour: count the pixels that differ from its corner
        differ = int((np.abs(img - img[2, 2]).sum(-1) > 60).sum())
        assert img.shape[0] > 100 and differ > 0.002 * img.shape[0] * img.shape[1], (differ, errors)
    (run,) = [q for q in outputs.iterdir() if q.name.startswith("a-yellow-mushroom")]
    assert (run / "model.ply").is_file() and (run / "model.glb").is_file()


def test_a_picture_uploaded_in_the_browser_becomes_its_object(app_url, tmp_path):
    """The upload widget as a visitor uses it: a picture chosen in the page's file input runs image-to-3d (the
    status says so, the mesh viewer draws the object, the run folder is the picture's); a picture with no object
    on it shows a one-line error in the page and writes nothing; clearing the picture makes Generate text to 3D
    again (an empty prompt is refused as before)."""
    from PIL import Image

    from dreamlift.evaluate.suite import SuitePrompt, render_reference

    url, outputs = app_url
    picture = tmp_path / "purple lamp.png"
    render_reference(SuitePrompt("a purple lamp", "lamp", "purple", (0.0, 15.0)), size=64).save(picture)
    blank = tmp_path / "blank.png"
    Image.new("RGB", (64, 64), "white").save(blank)
    with _browser(url) as (expect, page, errors):
        page.locator("#image input[type=file]").set_input_files(str(blank))
        expect(page.locator("#image img")).to_have_count(1, timeout=60_000)  # the page shows the upload
        before = sorted(p.name for p in outputs.iterdir())
        page.locator("#run").click()
        expect(page.locator("#status")).to_contain_text("Error:", timeout=120_000)
        assert "\n" not in page.locator("#status").inner_text().strip()
        assert sorted(p.name for p in outputs.iterdir()) == before

        page.locator("#image button[aria-label='Remove Image']").first.click()
        expect(page.locator("#image img")).to_have_count(0, timeout=30_000)
        page.locator("#image input[type=file]").set_input_files(str(picture))
        expect(page.locator("#image img")).to_have_count(1, timeout=60_000)
        page.locator("#run").click()
        expect(page.locator("#status")).to_contain_text("Done", timeout=300_000)
        assert "from purple-lamp" in page.locator("#status").inner_text()  # the kept copy: purple-lamp-<sha>.png
        img = _viewer_pixels(page)
        assert _object_pixels(img) > 0.005 * img.shape[0] * img.shape[1], (_object_pixels(img), errors)

        page.locator("#image button[aria-label='Remove Image']").first.click()
        expect(page.locator("#image img")).to_have_count(0, timeout=30_000)
        page.locator("#prompt textarea").fill("")
        page.locator("#run").click()
        expect(page.locator("#status")).to_contain_text("Error: the prompt is empty", timeout=60_000)
    (run,) = [p for p in outputs.iterdir() if p.name.startswith("purple-lamp")]
    config = json.loads((run / "config.json").read_text())
    assert Path(config["image"]).read_bytes() == picture.read_bytes()
    assert json.loads((run / "metrics.json").read_text())["backend"] == "novel-view"
