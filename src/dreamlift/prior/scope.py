"""Is a prompt inside the built-in prior's world? Measured with the text encoder.

The prior only knows the world's categories. A prompt about anything else would get
noise-like samples, so dreamlift says so and points to the Stable Diffusion backend.

How: colour words (the training and held-out ones, and any colour word or phrase the colour-name
tables of ``dreamlift.prior.colour_words`` know), view suffixes and caption fillers are removed from
the prompt ("a photo of a vermilion coffee mug, front view" -> "a coffee mug"); what is left is compared,
by cosine similarity of sentence embeddings, with "a <noun>" for every category noun
(training and held-out synonyms). Prompts whose best similarity is below ``THRESHOLD``
are out of the world. Colour words are removed because they dominate short sentence
embeddings ("a green frog" is closer to "a green toadstool" than "a frog" is to it).

The threshold was calibrated on 74 in-world prompts (random training captions,
held-out synonyms, free phrasings such as "a cup of coffee", "a shiny blue car"; lowest
score 0.715) and 24 out-of-world prompts ("a corgi wearing a top hat" 0.661, "a green
frog" 0.647, "a pineapple" 0.562, ...); see tests/unit/prior/test_scope.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from .text_encoder import TextEncoder

__all__ = ["ScopeResult", "PromptScope", "THRESHOLD", "object_phrase", "sd_command"]

THRESHOLD = 0.69
FILLERS = re.compile(r"\b(a photo of|a picture of|an image of|a render of|a rendering of|a 3d model of|"
                     r"on a white background)\b")
"""Caption fillers that say nothing about the object."""
VIEW_SUFFIX = re.compile(r",?\s*\b(front|side|back|overhead|top)\s+view\b")
"""A DreamFusion view suffix (group 1 is the view word)."""


def _colour_words() -> list[str]:
    from ..world import COLOUR_NAMES
    from ..world.captions import COLOUR_SYNONYMS, HELD_OUT_SYNONYMS

    words = {w for ws in COLOUR_SYNONYMS.values() for w in ws} | {w for c in COLOUR_NAMES for w in HELD_OUT_SYNONYMS[c]}
    return sorted(words, key=len, reverse=True)


def object_phrase(prompt: str) -> str:
    """The prompt without view suffix, caption fillers and colour words."""
    p = prompt.lower()
    p = VIEW_SUFFIX.sub("", p)
    p = FILLERS.sub("", p)
    for w in _colour_words():
        p = re.sub(rf"\b{re.escape(w)}\b", "", p)
    from .vocabulary import colour_phrases, words  # (vocabulary imports this module)

    found = words(p)
    spans = {j for i, k, _ in colour_phrases(found) for j in range(i, k)}  # "vermilion", "navy blue", "wooden"
    if spans:
        p = " ".join(w for j, w in enumerate(found) if j not in spans)
    p = re.sub(r"[,\s]+", " ", p).strip()
    p = re.sub(r"^(a|an|the)\s+(a|an)\b", r"\2", p)
    return p or "an object"


@dataclass
class ScopeResult:
    """How close a prompt is to the world."""

    prompt: str
    phrase: str  # the object phrase that was compared
    similarity: float  # best cosine similarity to a world noun
    nearest: str  # that noun, as "a <noun>"
    category: str  # its category

    @property
    def in_world(self) -> bool:
        return self.similarity >= THRESHOLD


class PromptScope:
    """Compares prompts with the world's category nouns."""

    def __init__(self, encoder: TextEncoder):
        from ..world import CATEGORIES
        from ..world.captions import CATEGORY_SYNONYMS, HELD_OUT_SYNONYMS

        self.encoder = encoder
        self.refs: list[tuple[str, str]] = [(f"a {n}", c) for c in CATEGORIES
                                            for n in CATEGORY_SYNONYMS[c] + HELD_OUT_SYNONYMS[c]]
        self._ref_emb = encoder.encode([r for r, _ in self.refs]).pooled  # (R, 384)

    def check(self, prompt: str) -> ScopeResult:
        phrase = object_phrase(prompt)
        with torch.no_grad():
            sims = self.encoder.encode([phrase]).pooled @ self._ref_emb.T  # (1, R)
        value, idx = sims[0].max(0)
        ref, category = self.refs[int(idx)]
        return ScopeResult(prompt, phrase, float(value), ref, category)

    def message(self, result: ScopeResult) -> str:
        """The one-line explanation for an out-of-world prompt."""
        from ..world import CATEGORIES

        return (f"{result.prompt!r} is outside the built-in prior's world (closest: {result.nearest!r}, similarity "
                f"{result.similarity:.2f} < {THRESHOLD}); it knows {len(CATEGORIES)} objects "
                f"({', '.join(c.replace('_', ' ') for c in CATEGORIES)}) in ten colours. For other prompts use "
                f"Stable Diffusion (a GPU; about 5 GB downloaded once): {sd_command(result.prompt)} "
                "(or --allow-out-of-world to let the built-in prior try)")


def sd_command(prompt: str) -> str:
    """The complete command that runs ``prompt`` on the Stable Diffusion backend (README, "Stable Diffusion")."""
    import shlex

    return (f"DREAMLIFT_ALLOW_DOWNLOAD=1 dreamlift generate {shlex.quote(prompt)} --backend stable-diffusion "
            "--device cuda")
