"""The words the built-in prior was trained on, and what it does with a prompt that has others.

The prior learnt every word it can follow from its training captions
(:mod:`dreamlift.world.captions`: the templates, the training colour words and nouns and the
view words). Its U-Net follows the *tokens* it saw, not what a new word means: prompts with
held-out colour words get the right colour 1 time in 7 even where the text encoder itself places
the prompt nearest the right colour ("a peach mug" nearest "an orange mug"), and "a cobalt sedan"
was distilled into something the evaluator recognises on none of its views (docs/BENCHMARKS.md).

So a prompt with a word outside that vocabulary is rewritten, before the prior sees it, into the
world caption that the text encoder (all-MiniLM-L6-v2) places nearest — the encoder's knowledge
of words, not a hand-written synonym table (the held-out synonyms are never consulted):

- **category**: the object phrase (view suffix, caption fillers and training colour words removed),
  with each subset of its unknown words dropped in turn, is compared by cosine similarity of the
  sentence embeddings with "a <noun>" for every *training* noun; the best (variant, noun) pair
  gives the category. Dropping lets "an amber cabin" be read as "a cabin": an unknown adjective
  would otherwise dominate a two-word sentence embedding (it matched "a pine tree").
- **colour**: the first training colour word in the prompt gives the colour. If there is none and
  the best variant dropped a word (which may then be a colour word), the colour is the one whose
  canonical prompt "a <colour> <noun>" lies nearest the whole prompt: the same nearest-neighbour
  test benchmarks/prior_quality.py uses to say whether the encoder knows a colour word. Else the
  prompt names no colour and the rewrite names none ("a sedan" -> "a car").
- the rewrite is "a <colour> <noun>" (canonical words) plus the prompt's last view suffix.

Prompts made only of training words, and prompts outside the world (``dreamlift.prior.scope``; they
reach the prior only with ``--allow-out-of-world``, which asks to try them as typed), reach the prior
unchanged. ``--keep-unknown-words`` (generate and sample) turns the rewrite off.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

import torch

from ..world.captions import canonical_prompt
from .scope import FILLERS, VIEW_SUFFIX, PromptScope
from .text_encoder import TextEncoder

__all__ = ["TRAINING_WORDS", "words", "unknown_words", "Rewrite", "PromptRewriter"]

_ARTICLES = {"a", "an", "the"}
_MAX_SUBSETS_WORDS = 4  # with more unknown words, only "drop none", "drop one" and "drop all" are tried


def _training_words() -> frozenset[str]:
    from ..world.captions import CATEGORY_SYNONYMS, COLOUR_SYNONYMS, TEMPLATES

    text = " ".join(TEMPLATES).replace("{colour}", " ").replace("{noun}", " ")
    for phrases in (*CATEGORY_SYNONYMS.values(), *COLOUR_SYNONYMS.values()):
        text += " " + " ".join(phrases)
    text += " " + "front side back overhead view an"  # "a" becomes "an" before a vowel
    return frozenset(words(text))


def words(text: str) -> list[str]:
    """Lower-case words of ``text`` (letters, digits and apostrophes; punctuation dropped)."""
    return re.findall(r"[a-z0-9']+", text.lower())


def _article(text: str) -> str:
    return ("an " if text[:1] in "aeiou" else "a ") + text


TRAINING_WORDS: frozenset[str] = _training_words()
"""Every word of every training caption (templates, training colour words and nouns, view words)."""


def unknown_words(prompt: str) -> list[str]:
    """The prompt's words that no training caption contains, in order (repeats kept once)."""
    return list(dict.fromkeys(w for w in words(prompt) if w not in TRAINING_WORDS))


@dataclass(frozen=True)
class Rewrite:
    """What the prior is given for a prompt."""

    prompt: str  # as typed
    text: str  # what the prior is conditioned on (== prompt when nothing was unknown)
    unknown: tuple[str, ...]  # the prompt's words outside the training vocabulary
    category: str | None = None  # the category the encoder chose (None when unchanged)
    colour: str | None = None  # the colour, or None (unchanged, or the prompt names none)
    similarity: float | None = None  # cosine similarity of the chosen phrase and "a <noun>"

    @property
    def changed(self) -> bool:
        return self.text != self.prompt

    def note(self) -> str:
        """One line for the user."""
        listed = ", ".join(repr(w) for w in self.unknown)
        return (f"the built-in prior never saw {listed} in training; it is conditioned on {self.text!r}, the "
                f"world caption nearest {self.prompt!r} by the text encoder (--keep-unknown-words to use the "
                f"prompt as typed)")


class PromptRewriter:
    """Rewrites prompts with words outside the prior's training vocabulary (see the module docstring).

    Args:
        encoder: the prior's text encoder (its sentence embeddings decide the rewrite).
    """

    def __init__(self, encoder: TextEncoder):
        from ..world import CATEGORIES, COLOUR_NAMES
        from ..world.captions import CATEGORY_SYNONYMS, COLOUR_SYNONYMS

        self.encoder = encoder
        self.colour_names = list(COLOUR_NAMES)
        self.colour_of = {w: c for c, ws in COLOUR_SYNONYMS.items() for w in ws}
        self.noun_of = {c: CATEGORY_SYNONYMS[c][0] for c in CATEGORIES}
        self.refs = [(_article(n), c) for c in CATEGORIES for n in CATEGORY_SYNONYMS[c]]
        with torch.no_grad():
            self._ref_emb = encoder.encode([r for r, _ in self.refs]).pooled  # (R, 384)
        self._cache: dict[str, Rewrite] = {}
        self._scope = None

    def rewrite(self, prompt: str) -> Rewrite:
        """The prompt the prior should be conditioned on (cached per prompt)."""
        if prompt not in self._cache:
            self._cache[prompt] = self._rewrite(prompt)
        return self._cache[prompt]

    def texts(self, prompts: list[str]) -> list[str]:
        return [self.rewrite(p).text for p in prompts]

    def _object_variants(self, body: str, unknown: list[str]) -> list[tuple[str, frozenset[str]]]:
        """(object phrase, dropped unknown words) for each subset of unknown words dropped."""
        phrase = FILLERS.sub(" ", body)
        kept = [w for w in words(phrase) if w not in self.colour_of and w != "small"]
        if len(unknown) <= _MAX_SUBSETS_WORDS:
            subsets = [frozenset(s) for r in range(len(unknown) + 1) for s in itertools.combinations(unknown, r)]
        else:
            subsets = [frozenset(), frozenset(unknown), *(frozenset([w]) for w in unknown)]
        variants = []
        for drop in subsets:
            rest = [w for w in kept if w not in drop]
            while rest and rest[0] in _ARTICLES:
                rest = rest[1:]
            if rest:
                variants.append((_article(" ".join(rest)), drop))
        return variants

    @torch.no_grad()
    def _rewrite(self, prompt: str) -> Rewrite:
        unknown = unknown_words(prompt)
        if not unknown:
            return Rewrite(prompt, prompt, ())
        self._scope = self._scope or PromptScope(self.encoder)
        if not self._scope.check(prompt).in_world:
            return Rewrite(prompt, prompt, tuple(unknown))
        lower = prompt.lower()
        views = list(VIEW_SUFFIX.finditer(lower))
        view = views[-1].group(1) if views else None
        suffix = f", {'overhead' if view == 'top' else view} view" if view else ""  # training views say overhead
        body = VIEW_SUFFIX.sub(" ", lower)
        variants = self._object_variants(body, unknown)
        if not variants:  # nothing but colour words and fillers: no object to name
            variants = [("an object", frozenset(unknown))]
        sims = self.encoder.encode([v for v, _ in variants]).pooled @ self._ref_emb.T  # (V, R)
        best = int(sims.argmax())
        vi, ri = divmod(best, sims.shape[1])
        category = self.refs[ri][1]
        colours = [self.colour_of[w] for w in words(body) if w in self.colour_of]
        if colours:
            colour = colours[0]
        elif variants[vi][1]:  # a dropped word may be a colour: the encoder's nearest colour
            cands = [canonical_prompt(category, c) for c in self.colour_names]
            sim_c = self.encoder.encode([body.strip(" ,")]).pooled @ self.encoder.encode(cands).pooled.T  # (1, 10)
            colour = self.colour_names[int(sim_c.argmax())]
        else:
            colour = None
        text = (canonical_prompt(category, colour) if colour else _article(self.noun_of[category])) + suffix
        return Rewrite(prompt, text, tuple(unknown), category, colour, float(sims[vi, ri]))
