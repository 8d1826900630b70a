"""Captions: words, view suffixes, held-out synonyms."""

import pytest
import torch

from dreamlift.world import CATEGORIES, COLOURS
from dreamlift.world.captions import (
    CATEGORY_SYNONYMS, COLOUR_SYNONYMS, HELD_OUT_SYNONYMS, canonical_prompt, random_caption,
)


def test_canonical_prompts():
    assert canonical_prompt("mug", "red") == "a red mug"
    assert canonical_prompt("traffic_cone", "orange") == "an orange traffic cone"
    with pytest.raises(ValueError):
        canonical_prompt("mug", "mauve")


def test_every_category_and_colour_has_words_and_held_out_words():
    assert set(CATEGORY_SYNONYMS) == set(CATEGORIES) and set(COLOUR_SYNONYMS) == set(COLOURS)
    for name in list(CATEGORIES) + list(COLOURS):
        assert HELD_OUT_SYNONYMS[name]


def test_captions_use_training_words_and_never_held_out_ones():
    g = torch.Generator().manual_seed(0)
    held_out = [w for words in HELD_OUT_SYNONYMS.values() for w in words]
    for category in CATEGORIES:
        for colour in COLOURS:
            for _ in range(20):
                az, el = float(torch.rand(()) * 360 - 180), float(torch.rand(()) * 80 - 10)
                c = random_caption(category, colour, az, el, g, view_prob=0.5)
                assert any(n in c for n in CATEGORY_SYNONYMS[category]), c
                assert any(w in c for w in COLOUR_SYNONYMS[colour]), c
                assert not any(w in c for w in held_out), c
                assert " a a" not in c and " a o" not in c and " a e" not in c, c


def test_view_suffix_follows_the_camera():
    g = torch.Generator().manual_seed(0)
    assert random_caption("chair", "blue", 0, 0, g, view_prob=1.0).endswith(", front view")
    assert random_caption("chair", "blue", 180, 0, g, view_prob=1.0).endswith(", back view")
    assert random_caption("chair", "blue", 90, 0, g, view_prob=1.0).endswith(", side view")
    assert random_caption("chair", "blue", 0, 80, g, view_prob=1.0).endswith(", overhead view")
    assert not random_caption("chair", "blue", 0, 0, g, view_prob=0.0).endswith("view")
    captions = {random_caption("chair", "blue", 0, 0, g) for _ in range(200)}
    assert len(captions) > 10  # templates and synonyms vary
