"""Tiny random-initialised Stable Diffusion and DeepFloyd IF folders, built offline for tests.

Each builder writes a folder in the diffusers pipeline layout with ``save_pretrained``, so the
backends load it through their real loading code. Nothing comes from the Hugging Face hub:
the tokenizers are built here from a tiny vocabulary.

- CLIP: a byte-pair tokenizer from a vocab.json / merges.txt written below (whole-word merges
  for WORDS, single characters otherwise), model_max_length 16.
- T5: a Unigram tokenizer over the same words built with the ``tokenizers``-backed T5Tokenizer
  (transformers >= 5 builds it from a vocabulary list without sentencepiece; with transformers 4,
  T5TokenizerFast around a ``tokenizers.Tokenizer``). It is saved as tokenizer.json only, where
  the real IF repository ships spiece.model: same class, same layout, no SentencePiece file.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

WORDS = ["a", "an", "red", "blue", "green", "cat", "dog", "chair", "mug", "front", "side", "back", "overhead",
         "view", "blurry", "ugly", "low", "quality", "photo", "of"]
CLIP_MAX_TOKENS = 16
HIDDEN = 32


def _transformers_major() -> int:
    import transformers

    return int(transformers.__version__.split(".")[0])



def write_clip_vocab(folder: Path) -> Path:
    """vocab.json + merges.txt of a tiny CLIP BPE: every character, and whole-word merges for WORDS."""
    folder.mkdir(parents=True, exist_ok=True)
    vocab: dict[str, int] = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in sorted(set("".join(WORDS)) | set(",.!")):
        vocab.setdefault(c, len(vocab))
        vocab.setdefault(c + "</w>", len(vocab))
    merges: list[str] = []
    for word in WORDS:
        pieces = list(word[:-1]) + [word[-1] + "</w>"]
        cur = pieces[0]
        for nxt in pieces[1:]:
            merges.append(f"{cur} {nxt}")
            cur += nxt
            vocab.setdefault(cur, len(vocab))
    merges = list(dict.fromkeys(merges))
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    return folder


def clip_tokenizer(work: Path):
    from transformers import CLIPTokenizer

    return CLIPTokenizer.from_pretrained(str(write_clip_vocab(work)), model_max_length=CLIP_MAX_TOKENS,
                                         local_files_only=True)


def t5_tokenizer():
    """A Unigram T5 tokenizer over WORDS: <pad>=0, </s>=1, <unk>=2, then '▁', the words and punctuation."""
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    vocab += [("\u2581" + w, -3.0) for w in WORDS] + [(p, -4.0) for p in ",.!"]
    if _transformers_major() >= 5:
        from transformers import T5Tokenizer

        return T5Tokenizer(vocab=vocab, extra_ids=0, model_max_length=512)
    from tokenizers import Tokenizer, pre_tokenizers, processors
    from tokenizers.models import Unigram
    from transformers import T5TokenizerFast

    tok = Tokenizer(Unigram(vocab, unk_id=2))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return T5TokenizerFast(tokenizer_object=tok, extra_ids=0, model_max_length=512)


def build_sd(folder: Path, prediction_type: str = "epsilon", beta_schedule: str = "scaled_linear") -> Path:
    """A tiny SD folder: 2-level VAE (vae_scale_factor 2), U-Net sample_size 8 -> resolution 16."""
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)
    tokenizer = clip_tokenizer(folder / "_vocab")
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(16, 32),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=HIDDEN, attention_head_dim=4, norm_num_groups=8)
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, layers_per_block=1, block_out_channels=(8, 16),
        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
        norm_num_groups=4, sample_size=16)
    text = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=HIDDEN, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, max_position_embeddings=CLIP_MAX_TOKENS, bos_token_id=0, eos_token_id=1,
        pad_token_id=1))
    scheduler = DDPMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                              beta_schedule=beta_schedule, prediction_type=prediction_type)
    unet.save_pretrained(folder / "unet")
    vae.save_pretrained(folder / "vae")
    text.save_pretrained(folder / "text_encoder")
    tokenizer.save_pretrained(folder / "tokenizer")
    scheduler.save_pretrained(folder / "scheduler")
    return folder


def build_if(folder: Path) -> Path:
    """A tiny IF stage-I folder shaped like IF-I-XL: 3 -> 6 channels, SimpleCrossAttn blocks, T5 text."""
    from diffusers import DDPMScheduler, UNet2DConditionModel
    from transformers import T5Config, T5EncoderModel

    torch.manual_seed(0)
    tokenizer = t5_tokenizer()
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=3, out_channels=6, layers_per_block=1, block_out_channels=(16, 32),
        down_block_types=("ResnetDownsampleBlock2D", "SimpleCrossAttnDownBlock2D"),
        up_block_types=("SimpleCrossAttnUpBlock2D", "ResnetUpsampleBlock2D"),
        mid_block_type="UNetMidBlock2DSimpleCrossAttn", cross_attention_dim=HIDDEN, encoder_hid_dim=HIDDEN,
        addition_embed_type="text", addition_embed_type_num_heads=2, attention_head_dim=8,
        resnet_time_scale_shift="scale_shift", norm_num_groups=8)
    text = T5EncoderModel(T5Config(
        vocab_size=len(tokenizer), d_model=HIDDEN, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
        relative_attention_num_buckets=8, dropout_rate=0.0, pad_token_id=0, eos_token_id=1,
        decoder_start_token_id=0))
    scheduler = DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2",
                              variance_type="learned_range", prediction_type="epsilon", thresholding=True)
    unet.save_pretrained(folder / "unet")
    text.save_pretrained(folder / "text_encoder")
    tokenizer.save_pretrained(folder / "tokenizer")
    scheduler.save_pretrained(folder / "scheduler")
    return folder


SD21_BASE = dict(unet_channels=(320, 640, 1280, 1280), heads=(5, 10, 20, 20), text_dim=1024, text_layers=23,
                 vae_channels=(128, 256, 512, 512), latent_size=64)


def build_sd_shaped(folder, unet_channels, heads, text_dim, text_layers, vae_channels, latent_size, tokens=77,
                    dtype=torch.float16):
    """A random-weight SD folder of the given architecture (``SD21_BASE``: Stable Diffusion 2.1 base's), saved in
    ``dtype``: real-sized timings with no download (tests/gpu/test_sd_speed.py, benchmarks/sd_speed.py)."""
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)
    tokenizer = clip_tokenizer(folder / "_vocab")
    tokenizer.model_max_length = tokens
    n = len(unet_channels)
    unet = UNet2DConditionModel(
        sample_size=latent_size, in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=unet_channels,
        down_block_types=("CrossAttnDownBlock2D",) * (n - 1) + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * (n - 1),
        cross_attention_dim=text_dim, attention_head_dim=heads, use_linear_projection=True)
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2, block_out_channels=vae_channels,
        down_block_types=("DownEncoderBlock2D",) * len(vae_channels),
        up_block_types=("UpDecoderBlock2D",) * len(vae_channels),
        sample_size=latent_size * 2 ** (len(vae_channels) - 1))
    text = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=text_dim, intermediate_size=4 * text_dim, num_hidden_layers=text_layers,
        num_attention_heads=max(text_dim // 64, 1), max_position_embeddings=tokens, hidden_act="gelu",
        bos_token_id=0, eos_token_id=1, pad_token_id=1))
    scheduler = DDPMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                              beta_schedule="scaled_linear")
    unet.to(dtype).save_pretrained(folder / "unet")
    vae.to(dtype).save_pretrained(folder / "vae")
    text.to(dtype).save_pretrained(folder / "text_encoder")
    tokenizer.save_pretrained(folder / "tokenizer")
    scheduler.save_pretrained(folder / "scheduler")
    return folder
