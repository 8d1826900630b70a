"""`dreamlift app`: the web app (gradio). A prompt (or a picture) in, the object in an interactive 3D viewer out.

    pip install "dreamlift[app]"
    dreamlift app                          # http://127.0.0.1:7860
    dreamlift app --host 0.0.0.0 --port 8000 --outputs runs/

Each run is one ``dreamlift generate`` in a spawned worker process (so a crash or a cancel never takes the
server with it) writing into OUTPUTS/<slug>/; the page streams its progress (step, steps per second, the
losses and a current render, from the run's progress.json and preview.png), then shows the glb (and a
Gaussian run's .ply) in ``gr.Model3D``, the turntable, the views and download links for every output. Runs are
queued one at a time: a second visitor waits in the queue instead of halving the first one's CPU. Cancel stops
the run at its next step with its checkpoint kept (``dreamlift generate ... --resume`` continues it). The
gallery shows the finished runs in OUTPUTS (the app's and the command line's), newest first.

A picture uploaded beside the prompt makes the run ``dreamlift image-to-3d`` of that picture instead (the prompt,
if any, its optional caption); the upload is kept in OUTPUTS/.uploads/ so that the run can be resumed.

The named API endpoint ``/generate`` takes the prompt first and defaults every other input:

    from gradio_client import Client
    status, preview, glb, ply, video, views, files, gallery = Client("http://127.0.0.1:7860/").predict(
        "a red mug", api_name="/generate")
"""

import json
import os
import signal
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

from .config import DreamliftError, option, with_overrides

__all__ = ["AppConfig", "build_app", "run_app_command", "list_runs", "resume_command"]

REPRESENTATIONS = ("nerf", "gaussians")
BACKENDS = ("builtin", "stable-diffusion", "deepfloyd-if")
PRESETS = ("fast", "quality", "sd", "if")


@dataclass
class AppConfig:
    """Settings of ``dreamlift app``."""

    host: str = option("127.0.0.1", "the address to listen on (0.0.0.0: every network interface)")
    port: int = option(7860, "the port to listen on", low=1, high=65535)
    outputs: Path = option(Path("outputs"), "the folder runs are written to and the gallery is read from")
    preview_every: float = option(3.0, "seconds between progress updates and renders of a running run",
                                  low=0.2, high=600)
    set: tuple[str, ...] = option((), "generate settings for every run, comma-separated KEY=VALUE (dotted for "
                                      "nested ones), e.g. mesh_resolution=96,video_frames=24 (default: none)",
                               metavar="KEY=VALUE")
    gallery_size: int = option(24, "earlier runs shown in the gallery", low=1, high=1000)

    def validate(self) -> None:
        from .config import check_output_folder, check_values
        from .generate import GenerateConfig

        check_output_folder(self.outputs, "--outputs")
        check_values(with_overrides(GenerateConfig(), self.set))  # an unknown key, a value out of range: refused now


# ---------------------------------------------------------------------------------------------- runs on disk
def list_runs(outputs: Path, limit: int = 24) -> list[dict]:
    """The finished runs in ``outputs`` (folders with metrics.json and views.png), newest first."""
    runs = []
    root = Path(outputs)
    if not root.is_dir():
        return runs
    for folder in root.iterdir():
        metrics_file = folder / "metrics.json"
        if folder.name.startswith(".") or not metrics_file.is_file() or not (folder / "views.png").is_file():
            continue
        try:
            metrics = json.loads(metrics_file.read_text())
            config = json.loads((folder / "config.json").read_text()) if (folder / "config.json").is_file() else {}
        except (OSError, ValueError):
            continue
        runs.append({"folder": folder, "metrics": metrics, "config": config, "mtime": metrics_file.stat().st_mtime})
    runs.sort(key=lambda r: r["mtime"], reverse=True)
    return runs[:limit]


def _title(m: dict, folder: Path) -> str:
    """What a run was made from: its prompt, or the picture of an image-to-3d run."""
    if m.get("prompt"):
        return m["prompt"]
    return f"from {Path(m['image']).name}" if m.get("image") else folder.name


def _caption(run: dict) -> str:
    m, c = run["metrics"], run["config"]
    total = m.get("seconds", {}).get("total")
    return (f"{_title(m, run['folder'])} · {c.get('representation', '?')} · {m.get('steps', '?')} steps"
            + (f" · {total:.0f} s" if total is not None else ""))


def _thumbnail(folder: Path):
    """The lit front view: the top-left cell of views.png (rows: views; columns: lit, albedo, textureless,
    normals)."""
    from PIL import Image

    with Image.open(folder / "views.png") as im:
        w, h = im.size
        return im.convert("RGB").crop((0, 0, w // 4, h // 4))


def _files(folder: Path) -> list[str]:
    from .generate import OUTPUT_FILES

    return [str(folder / name) for name in OUTPUT_FILES if (folder / name).is_file()]


def _describe(run_folder: Path) -> str:
    """A run's settings and figures as markdown."""
    m = json.loads((run_folder / "metrics.json").read_text())
    c = json.loads((run_folder / "config.json").read_text()) if (run_folder / "config.json").is_file() else {}
    sec = m.get("seconds", {})
    text = (f"**{_title(m, run_folder)}** in `{run_folder}`\n\n"
            f"{c.get('representation', '?')}, backend {c.get('backend', '?')}, preset {c.get('preset', '?')}, "
            f"seed {c.get('seed', '?')}, {m.get('steps', '?')} steps; train {sec.get('train', 0):.0f} s, total "
            f"{sec.get('total', 0):.0f} s on {m.get('device', '?')}")
    if m.get("conditioning_prompt") and m["conditioning_prompt"] != m.get("prompt"):
        text += f"; the prior was asked for *{m['conditioning_prompt']}*"
    losses = m.get("final_losses", {})
    if losses:
        text += "\n\nfinal losses: " + ", ".join(f"{k} {v:.4g}" for k, v in losses.items())
    return text


def _unique_folder(outputs: Path, slug: str) -> Path:
    from .runfolder import RunFolder

    for i in range(1, 10_000):
        out = outputs / (slug if i == 1 else f"{slug}-{i}")
        folder = RunFolder(out)
        if not out.exists() and not folder.stage.exists() and not folder.lock_path.exists():
            return out
    raise DreamliftError(f"no free folder for {slug!r} in {outputs}")


def resume_command(gen) -> str:
    """The command line that continues the run of ``gen`` (a GenerateConfig, or an ImageTo3DConfig, with its out
    set) from its checkpoint: the prompt (or the image), OUT, every setting that differs from the command's
    defaults, --resume."""
    import shlex

    from .config import config_to_options
    from .image_to_3d import ImageTo3DConfig

    skip = ("out", "resume", "force", "progress", "preview_every")
    if isinstance(gen, ImageTo3DConfig):
        options = config_to_options(gen, skip=(*skip, "image"))
        return shlex.join(["dreamlift", "image-to-3d", str(gen.image), "--out", str(gen.out), *options, "--resume"])
    options = config_to_options(gen, skip=skip)
    return shlex.join(["dreamlift", "generate", gen.prompt, "--out", str(gen.out), *options, "--resume"])


def _keep_upload(outputs: Path, upload: str) -> Path:
    """A copy of an uploaded picture in OUTPUTS/.uploads/, named by its content (gradio's own copy is temporary;
    the run's config and its resume command name this one)."""
    import hashlib
    import shutil

    from .image_to_3d import _stem

    src = Path(upload)
    digest = hashlib.sha256(src.read_bytes()).hexdigest()[:16]
    dest = outputs / ".uploads" / f"{_stem(src)}-{digest}{src.suffix.lower()[:6]}"
    if not dest.is_file():
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(dest.name + ".part")
        shutil.copyfile(src, tmp)
        os.replace(tmp, dest)
    return dest


# ---------------------------------------------------------------------------------------------- one run
def _run_in_worker(cfg) -> dict:
    from .image_to_3d import ImageTo3DConfig, run_image_to_3d

    if isinstance(cfg, ImageTo3DConfig):
        return run_image_to_3d(cfg)
    from .generate import run_generate

    return run_generate(cfg)


class Runner:
    """The one run at a time of this server: its worker process, and who may cancel it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.proc = None
        self.session: str | None = None

    def start(self, cfg, session: str | None):
        import multiprocessing as mp

        from .executor import start_worker

        threads = max(1, os.cpu_count() or 1)
        # prctl=False: this thread is one of the server's pool threads and may end before the run
        proc, receive = start_worker(mp.get_context("spawn"), _run_in_worker, (cfg,), threads, prctl=False,
                                     name="dreamlift-app-run")
        with self.lock:
            self.proc, self.session = proc, session
        return proc, receive

    def finish(self, proc) -> None:
        with self.lock:
            if self.proc is proc:
                self.proc, self.session = None, None

    def cancel(self, session: str | None) -> bool:
        """SIGTERM to the running worker if it is this visitor's: generate saves its checkpoint and stops."""
        with self.lock:
            proc = self.proc if self.proc is not None and (self.session == session or session is None) else None
        if proc is None or not proc.is_alive():
            return False
        os.kill(proc.pid, signal.SIGTERM)
        return True


def _progress_markdown(state: dict | None, started: float) -> str:
    waited = time.time() - started
    if not state:
        return f"Starting (loading the prior) … {waited:.0f} s"
    if state["phase"] == "setup":
        return f"Setting up (the area prior samples the backend) … {waited:.0f} s"
    if state["phase"] == "export":
        return f"Step {state['step']} of {state['steps']} done; exporting the mesh, video and views … {waited:.0f} s"
    rate = state.get("steps_per_second")
    losses = state.get("losses", {})
    shown = ", ".join(f"{k} {losses[k]:.4g}" for k in ("sds", "orientation", "entropy", "opacity") if k in losses)
    eta = (state["steps"] - state["step"]) / rate if rate else None
    return (f"Step {state['step']} of {state['steps']}" + (f" · {rate:.1f} steps/s" if rate else "")
            + (f" · about {eta:.0f} s to go" if eta is not None else "") + (f" · {shown}" if shown else ""))


def build_app(cfg: AppConfig):
    """The gradio Blocks of the app (``.launch()`` serves it)."""
    try:
        import gradio as gr
    except ImportError:
        raise DreamliftError("the web app needs gradio: pip install 'dreamlift[app]'") from None
    from .generate import GenerateConfig, _slug
    from .runfolder import RunFolder

    outputs = Path(cfg.outputs)
    runner = Runner()

    def gallery_items():
        items, folders = [], []
        for r in list_runs(outputs, cfg.gallery_size):
            try:
                items.append((_thumbnail(r["folder"]), _caption(r)))
            except OSError:  # a views.png that is not an image
                continue
            folders.append(str(r["folder"]))
        return items, folders

    def result_of(folder: Path, note: str = ""):
        files = _files(folder)
        glb = str(folder / "model.glb") if (folder / "model.glb").is_file() else None
        ply = str(folder / "model.ply") if (folder / "model.ply").is_file() else None
        video = str(folder / "turntable.mp4") if (folder / "turntable.mp4").is_file() else None
        views = str(folder / "views.png") if (folder / "views.png").is_file() else None
        return (note + _describe(folder), glb, gr.update(value=ply, visible=ply is not None), video, views, files)

    def generate(prompt: str = "", representation: str = "nerf", backend: str = "builtin", preset: str = "fast",
                 seed: float = 0, steps: float = 0, accept_rewrite: bool = False, image: str | None = None,
                 request: gr.Request = None):
        """Make a 3D object from a prompt, or from a picture (``image``, a file path) with an optional caption;
        yields progress, then the outputs (glb, ply, video, views, files)."""
        skip = gr.skip()
        session = getattr(request, "session_hash", None)
        started = time.time()
        try:
            if representation not in REPRESENTATIONS or backend not in BACKENDS or preset not in PRESETS:
                raise DreamliftError(f"unknown choice: representation {representation!r}, backend {backend!r}, "
                                     f"preset {preset!r}")
            if seed is None or steps is None or float(seed) != int(seed) or float(steps) != int(steps) \
                    or int(seed) < 0 or int(steps) < 0:
                raise DreamliftError("the seed and the steps must be whole numbers >= 0 (steps 0: the preset's)")
            text = (prompt or "").strip()
            common = dict(prompt=text, representation=representation, backend=backend, preset=preset,
                          seed=int(seed), progress=False, preview_every=cfg.preview_every,
                          accept_rewrite=bool(accept_rewrite))
            if image:
                from .image_to_3d import ImageTo3DConfig, output_slug
                from .images import load_reference_image

                load_reference_image(Path(image), 32)  # not an image, all background, ...: refused now
                gen = ImageTo3DConfig(image=_keep_upload(outputs, image), **common)
                slug = output_slug(Path(image))
            else:
                gen, slug = GenerateConfig(**common), _slug(text)
            gen = with_overrides(gen, cfg.set)
            if int(steps) > 0:
                gen = replace(gen, steps=int(steps))
            gen.resolved()  # an empty or too long prompt, a bad setting: shown now, before any work
            out = _unique_folder(outputs, slug)
            gen = replace(gen, out=out)
        except DreamliftError as exc:
            yield (f"**Error:** {exc}", None, skip, skip, skip, skip, skip, skip, skip)
            return
        yield (f"Queued run into `{out}` …", None, skip, skip, skip, skip, skip, skip, None)
        proc, receive = runner.start(gen, session)
        stage = RunFolder(out).stage
        shown_preview = 0.0
        result = None
        try:
            while True:
                if receive.poll(1.0):
                    try:
                        result = receive.recv()
                    except EOFError:
                        result = None
                    break
                if not proc.is_alive():
                    break
                state = None
                try:
                    state = json.loads((stage / "progress.json").read_text())
                except (OSError, ValueError):
                    pass
                preview = skip
                p = stage / "preview.png"
                try:
                    if p.is_file() and p.stat().st_mtime > shown_preview:
                        shown_preview = p.stat().st_mtime
                        from PIL import Image

                        with Image.open(p) as im:
                            preview = im.copy()
                except OSError:
                    pass
                yield (_progress_markdown(state, started), preview, skip, skip, skip, skip, skip, skip, skip)
        finally:
            if proc.is_alive() and result is None:  # the visitor left: stop the run, keep its checkpoint
                os.kill(proc.pid, signal.SIGTERM)
            proc.join(timeout=120)
            receive.close()
            runner.finish(proc)
        items, _ = gallery_items()
        if result is None:
            message = f"**Error:** the run's worker process ended unexpectedly (exit code {proc.exitcode})"
            yield (message, None, skip, skip, skip, skip, skip, skip, skip)
            return
        status, value, seconds = result
        if status == "interrupted":
            yield (f"**Cancelled.** {value}. Continue it with `{resume_command(gen)}`", skip, skip, skip, skip, skip,
                   skip, items, skip)
            return
        if status == "error":
            yield (f"**Error:** {value}", None, skip, skip, skip, skip, skip, skip, skip)
            return
        desc, glb, _, video, views, files = result_of(out, note=f"**Done** in {seconds:.0f} s. ")
        ply = str(out / "model.ply") if (out / "model.ply").is_file() else None
        yield (desc, None, glb, ply, video, views, files, items, str(out))

    def cancel(request: gr.Request):
        if runner.cancel(getattr(request, "session_hash", None)):
            return "Cancelling: the run stops after its current step and keeps its checkpoint …"
        return gr.skip()

    def show_run(folders: list[str], evt: gr.SelectData):
        if evt is None or evt.index is None or not 0 <= evt.index < len(folders):
            return (gr.skip(),) * 6
        folder = Path(folders[evt.index])
        if not (folder / "metrics.json").is_file():
            return ("**Error:** that run is gone from the outputs folder",) + (gr.skip(),) * 5
        return result_of(folder)

    def show_finished(folder: str | None):
        """The viewers of the run generate just finished (set here, after the streaming event: a Model3D filled
        by a streaming event's last update draws no canvas in gradio 6)."""
        if not folder or not (Path(folder) / "metrics.json").is_file():
            return gr.skip(), gr.skip()
        _, glb, ply, *_ = result_of(Path(folder))
        return glb, ply

    def refresh():
        items, folders = gallery_items()
        return items, folders

    with gr.Blocks(title="dreamlift", analytics_enabled=False) as demo:
        gr.Markdown("# dreamlift\nText (or a picture) to 3D by score distillation. The built-in prior knows 15 "
                    "objects in 10 colours (a mug, a chair, a tree, …; see docs/WORLD.md) and runs on a CPU in "
                    "minutes. A picture should show the object centred on white, from the front.")
        with gr.Row():
            with gr.Column(scale=1):
                prompt = gr.Textbox(label="Prompt", placeholder="a red mug", elem_id="prompt", lines=1)
                image = gr.Image(label="Or a picture of an object (image to 3D; the prompt, if any, describes it)",
                                 type="filepath", image_mode=None, sources=["upload"], elem_id="image", height=160)
                with gr.Row():
                    representation = gr.Dropdown(list(REPRESENTATIONS), value="nerf", label="Representation",
                                                 elem_id="representation")
                    backend = gr.Dropdown(list(BACKENDS), value="builtin", label="Backend")
                with gr.Row():
                    preset = gr.Dropdown(list(PRESETS), value="fast", label="Preset")
                    seed = gr.Number(value=0, precision=0, minimum=0, label="Seed")
                    steps = gr.Number(value=0, precision=0, minimum=0, label="Steps (0: the preset's)",
                                      elem_id="steps")
                accept = gr.Checkbox(value=False, label="Make the nearest prompt the prior can when it cannot "
                                                        "make this one")
                with gr.Row():
                    run_btn = gr.Button("Generate", variant="primary", elem_id="run")
                    cancel_btn = gr.Button("Cancel", elem_id="cancel")
                status = gr.Markdown("Type a prompt (or upload a picture) and press Generate.", elem_id="status")
                preview = gr.Image(label="Current render", interactive=False, elem_id="preview", height=192)
            with gr.Column(scale=2):
                model = gr.Model3D(label="Mesh (model.glb)", elem_id="model", height=420,
                                   clear_color=(1.0, 1.0, 1.0, 1.0))
                splats = gr.Model3D(label="3D Gaussians (model.ply)", elem_id="splats", height=420, visible=False)
                with gr.Row():
                    video = gr.Video(label="Turntable", elem_id="video", autoplay=True, loop=True)
                    views = gr.Image(label="Views (lit, albedo, textureless, normals)", elem_id="views",
                                     interactive=False)
                files = gr.File(label="Downloads", file_count="multiple", elem_id="files", interactive=False)
                glb_file = gr.File(label="model.glb", visible=False)  # /generate's glb and ply outputs
                ply_file = gr.File(label="model.ply", visible=False)
        items, folders_now = gallery_items()
        folders = gr.State(folders_now)
        gallery = gr.Gallery(value=items, label="Earlier runs (newest first)", columns=8, height=240,
                             object_fit="contain", elem_id="gallery", allow_preview=False,
                             fit_columns=False)
        finished = gr.State(None)
        outs = [status, preview, glb_file, ply_file, video, views, files, gallery, finished]
        inputs = [prompt, representation, backend, preset, seed, steps, accept, image]
        for event in (run_btn.click(generate, inputs=inputs, outputs=outs, api_name="generate", concurrency_limit=1,
                                    concurrency_id="runs"),
                      prompt.submit(generate, inputs=inputs, outputs=outs, api_name=False, concurrency_limit=1,
                                    concurrency_id="runs")):
            event.then(show_finished, inputs=[finished], outputs=[model, splats], api_name=False).then(
                refresh, outputs=[gallery, folders], api_name=False)
        cancel_btn.click(cancel, outputs=[status], queue=False, api_name=False)
        gallery.select(show_run, inputs=[folders], outputs=[status, model, splats, video, views, files],
                       api_name=False)
        demo.load(refresh, outputs=[gallery, folders], api_name=False)
    demo.queue(default_concurrency_limit=1)
    return demo


def run_app_command(cfg: AppConfig) -> None:
    cfg.validate()
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    demo = build_app(cfg)
    Path(cfg.outputs).mkdir(parents=True, exist_ok=True)
    print(f"dreamlift app: serving http://{cfg.host}:{cfg.port}/ (runs in {cfg.outputs}); Ctrl-C stops it",
          flush=True)
    try:
        demo.launch(server_name=cfg.host, server_port=cfg.port, show_error=False, quiet=True,
                    allowed_paths=[str(Path(cfg.outputs).resolve())])
    except OSError as exc:
        raise DreamliftError(f"cannot serve on {cfg.host}:{cfg.port}: {exc.strerror or exc}") from None
