"""Prompt suites: every prompt names a real world object, core-v1 covers the world, slugs are distinct."""

import pytest

from dreamlift.config import DreamliftError
from dreamlift.evaluate.suite import SUITES, SuitePrompt, get_suite, prompt_slug, suite_labels
from dreamlift.world import CATEGORIES, COLOUR_NAMES, FRONT_FACING
from dreamlift.world.captions import CATEGORY_SYNONYMS, COLOUR_SYNONYMS, HELD_OUT_SYNONYMS


@pytest.mark.parametrize("name", list(SUITES))
def test_every_prompt_names_a_world_object_in_its_own_words(name):
    prompts = get_suite(name)
    assert len({p.slug for p in prompts}) == len(prompts)  # one folder per prompt
    for p in prompts:
        assert p.category in CATEGORIES and p.colour in COLOUR_NAMES
        assert p.world_object().category == p.category
        text = p.prompt.lower()
        nouns = CATEGORY_SYNONYMS[p.category] + HELD_OUT_SYNONYMS[p.category]
        colours = COLOUR_SYNONYMS[p.colour] + HELD_OUT_SYNONYMS[p.colour]
        assert any(n in text for n in nouns), p
        assert any(c in text.split() or c + "," in text.split() for c in colours), p


def test_core_suite_covers_the_world():
    core = get_suite("core-v1")
    assert len(core) >= 20
    assert {p.category for p in core} == set(CATEGORIES)
    assert set(FRONT_FACING) <= {p.category for p in core}
    assert len({p.colour for p in core}) >= 6
    held_out = [p for p in core if any(w in p.prompt for w in HELD_OUT_SYNONYMS[p.category])]
    synonyms = [p for p in core if CATEGORY_SYNONYMS[p.category][0] not in p.prompt
                and not any(w in p.prompt for w in HELD_OUT_SYNONYMS[p.category])]
    assert len(held_out) >= 2 and len(synonyms) >= 2


def test_smoke_suite_is_small_and_has_a_front_facing_prompt():
    smoke = get_suite("smoke-v1")
    assert 2 <= len(smoke) <= 3
    assert any(p.category in FRONT_FACING for p in smoke)


def test_core_prompts_are_inside_the_priors_world():
    from dreamlift.prior.model import SHIPPED_WEIGHTS

    if not (SHIPPED_WEIGHTS / "prior.safetensors").exists():
        pytest.skip("no shipped prior")
    from dreamlift.guidance.builtin import BuiltinGuidance

    backend = BuiltinGuidance()
    for p in get_suite("core-v1"):
        backend.check_prompt(p.prompt)  # raises DreamliftError if generate would refuse it


def test_calibration_suite_is_disjoint_from_core_and_follows_its_rule():
    from dreamlift.world.captions import canonical_prompt

    calib = get_suite("calib-v1")
    used = {(p.category, p.colour) for p in get_suite("core-v1")}
    assert [p.category for p in calib] == list(CATEGORIES)  # every category once, in order
    assert not used & {(p.category, p.colour) for p in calib}  # nothing calibrated on is scored
    for i, p in enumerate(calib):  # the documented rule: the first unused colour from palette index 3 i
        expect = next(c for k in range(len(COLOUR_NAMES))
                      if (p.category, c := COLOUR_NAMES[(i * 3 + k) % len(COLOUR_NAMES)]) not in used)
        assert p.colour == expect and p.prompt == canonical_prompt(p.category, p.colour)


def test_held_out_objects_are_disjoint_from_the_text_suites_and_follow_their_rule():
    from dreamlift.world import HELD_OUT_OBJECTS

    used = {(p.category, p.colour) for name in ("core-v1", "calib-v1") for p in get_suite(name)}
    assert [c for c, _ in HELD_OUT_OBJECTS] == list(CATEGORIES)
    for i, (category, colour) in enumerate(HELD_OUT_OBJECTS):  # the first colour from index 3 i + 1 on not used
        expect = next(c for k in range(len(COLOUR_NAMES))
                      if (category, c := COLOUR_NAMES[(i * 3 + 1 + k) % len(COLOUR_NAMES)]) not in used)
        assert colour == expect


def test_unknown_suite_is_a_user_error():
    with pytest.raises(DreamliftError, match="core-v1"):
        get_suite("core-v9")


def test_labels_merge_synonymous_prompts():
    prompts = [SuitePrompt("a red mug", "mug", "red"), SuitePrompt("a crimson cup", "mug", "red"),
               SuitePrompt("a blue car", "car", "blue")]
    assert suite_labels(prompts) == [("mug", "red"), ("car", "blue")]
    assert prompt_slug("A snow man, azure!") == "a-snow-man-azure"


def test_image_suite_is_the_held_out_objects_at_the_default_reference_camera():
    from dreamlift.image_to_3d import DEFAULT_REFERENCE
    from dreamlift.world import HELD_OUT_OBJECTS
    from dreamlift.world.captions import canonical_prompt

    suite = get_suite("image-v1")
    assert [(p.category, p.colour) for p in suite] == list(HELD_OUT_OBJECTS)
    assert all(p.reference == DEFAULT_REFERENCE[:2] for p in suite)
    assert all(p.prompt == canonical_prompt(p.category, p.colour) for p in suite)
    assert all(p.reference is None for name in ("core-v1", "calib-v1", "smoke-v1") for p in get_suite(name))
