"""The words the built-in prior was trained on, and what it does with a prompt that has others.

The prior learnt every word it can follow from its training captions
(:mod:`dreamlift.world.captions`: the templates, the training colour words and nouns and the
view words). Its U-Net follows the *tokens* it saw, not what a new word means: prompts with
held-out colour words get the right colour 1 time in 7 even where the text encoder itself places
the prompt nearest the right colour ("a peach mug" nearest "an orange mug"), and "a cobalt sedan"
was distilled into something the evaluator recognises on none of its views (docs/decisions/colour-words.md).

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
from typing import Callable

import torch

from ..world.captions import canonical_prompt
from .colour_words import ColourMatch, find_colour_phrases
from .scope import FILLERS, VIEW_SUFFIX, PromptScope
from .text_encoder import TextEncoder

__all__ = ["TRAINING_WORDS", "words", "unknown_words", "Rewrite", "PromptRewriter", "colour_phrases",
           "review_prompt", "terminal_ask"]

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
    colours: tuple[ColourMatch, ...] = ()  # colour words read through the colour-name tables
    other: tuple[str, ...] = ()  # unknown words that are not colour words (counts, nouns, adjectives)

    @property
    def changed(self) -> bool:
        return self.text != self.prompt

    @property
    def changes_object(self) -> bool:
        """True when the rewrite is more than a colour word read as a world colour: a word it drops or
        replaces (a count, a noun, an adjective), or a colour the world does not have."""
        return self.changed and (bool(self.other) or any(m.colour is None for m in self.colours))

    def note(self) -> str:
        """One line for the user."""
        if self.colours and not self.changes_object:
            read = "; ".join(m.describe() for m in self.colours)
            return f"colour words read as world colours: {read}; the built-in prior is conditioned on {self.text!r}"
        listed = ", ".join(repr(w) for w in (self.other or self.unknown))
        read = f"; colour words read as world colours: {'; '.join(m.describe() for m in self.colours)}" \
            if self.colours else ""
        return (f"the built-in prior never saw {listed} in training; it is conditioned on {self.text!r}, the "
                f"world caption nearest {self.prompt!r} by the text encoder{read} (--keep-unknown-words to use the "
                f"prompt as typed)")

    def refusal(self) -> str:
        """The one-line error for a rewrite that changes the object in a run that cannot ask."""
        reasons = []
        if self.other:
            reasons.append(f"it never learnt {', '.join(repr(w) for w in self.other)}")
        missing = [m.phrase for m in self.colours if m.colour is None]
        if missing:
            reasons.append(f"its world has no colour near {', '.join(repr(w) for w in missing)}")
        return (f"the built-in prior cannot make {self.prompt!r} as typed ({'; '.join(reasons)}); the nearest it "
                f"can make is {self.text!r}. Pass --accept-rewrite to make that, --keep-unknown-words to condition "
                "on the prompt as typed, or --backend stable-diffusion for prompts outside its world")


#: Training words that never name an object's colour in a training caption ("on a white background").
_NOT_COLOURS_IN_TRAINING = frozenset({"white"})


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
        lower = prompt.lower()
        views = list(VIEW_SUFFIX.finditer(lower))
        view = views[-1].group(1) if views else None
        suffix = f", {'overhead' if view == 'top' else view} view" if view else ""  # training views say overhead
        body = VIEW_SUFFIX.sub(" ", lower)
        body_words = words(FILLERS.sub(" ", body))
        matches = colour_phrases(body_words)
        if not unknown and not matches:
            return Rewrite(prompt, prompt, ())
        self._scope = self._scope or PromptScope(self.encoder)
        if not self._scope.check(prompt).in_world:
            return Rewrite(prompt, prompt, tuple(unknown))
        in_colour = {j for i, k, _ in matches for j in range(i, k)}
        covered = {body_words[j] for j in in_colour}
        other = [w for w in unknown if w not in covered]
        object_words = " ".join(w for j, w in enumerate(body_words) if j not in in_colour)
        variants = self._object_variants(object_words, other)
        if not variants:  # nothing but colour words and fillers: no object to name
            variants = [("an object", frozenset(other))]
        sims = self.encoder.encode([v for v, _ in variants]).pooled @ self._ref_emb.T  # (V, R)
        best = int(sims.argmax())
        vi, ri = divmod(best, sims.shape[1])
        category = self.refs[ri][1]
        # the first colour the prompt names: a training colour word, or a colour phrase read through the tables
        named = sorted([(j, self.colour_of[w]) for j, w in enumerate(body_words)
                        if w in self.colour_of and j not in in_colour] + [(i, m.colour) for i, _, m in matches])
        if named:
            colour = named[0][1]
        elif variants[vi][1]:  # a dropped word may be a colour: the encoder's nearest colour
            cands = [canonical_prompt(category, c) for c in self.colour_names]
            sim_c = self.encoder.encode([body.strip(" ,")]).pooled @ self.encoder.encode(cands).pooled.T  # (1, 10)
            colour = self.colour_names[int(sim_c.argmax())]
        else:
            colour = None
        text = (canonical_prompt(category, colour) if colour else _article(self.noun_of[category])) + suffix
        return Rewrite(prompt, text, tuple(unknown), category, colour, float(sims[vi, ri]),
                       tuple(m for _, _, m in matches), tuple(other))


def colour_phrases(body_words: list[str]) -> list[tuple[int, int, ColourMatch]]:
    """The colour words and phrases of a prompt's words (fillers and view suffix removed) that the prior did not
    learn as colours: any word except the training colour words and the other training words ("white", which
    training captions use only for the background, is looked up)."""
    candidate = [w not in TRAINING_WORDS or w in _NOT_COLOURS_IN_TRAINING for w in body_words]
    return find_colour_phrases(body_words, candidate)


def review_prompt(prompt: str, encoder: TextEncoder, *, allow_out_of_world: bool = False,
                  keep_unknown_words: bool = False, accept_rewrite: bool = False,
                  ask: Callable[[str], bool] | None = None) -> Rewrite:
    """Decide, before any heavy work, what the built-in prior makes of ``prompt``; raise DreamliftError if nothing.

    Needs only the text encoder. In order: a prompt outside the world is refused (unless
    ``allow_out_of_world``) with the Stable Diffusion command to use instead; with ``keep_unknown_words``
    the prompt is used as typed; a rewrite that only reads colour words as world colours goes ahead (the
    caller prints its note); a rewrite that changes the object (a count, a noun or an adjective the prior
    never learnt, a colour the world lacks) goes ahead only with ``accept_rewrite`` or when ``ask`` (an
    interactive run's yes/no question) says yes.
    """
    from ..config import DreamliftError

    if not prompt.strip():
        raise DreamliftError("the prompt is empty")
    if not allow_out_of_world:
        scope = PromptScope(encoder)
        result = scope.check(prompt)
        if not result.in_world:
            raise DreamliftError(scope.message(result))
    if keep_unknown_words:
        return Rewrite(prompt, prompt, tuple(unknown_words(prompt)))
    rewrite = PromptRewriter(encoder).rewrite(prompt)
    if rewrite.changes_object and not accept_rewrite:
        if ask is None or not ask(f"the built-in prior cannot make {prompt!r} as typed; make {rewrite.text!r} "
                                  "instead? [y/N] "):
            raise DreamliftError(rewrite.refusal())
    return rewrite


def ask_on_terminal(question: str) -> bool:
    """A yes/no question on the terminal (an empty answer or end of input is no)."""
    try:
        return input(question).strip().lower() in {"y", "yes"}
    except EOFError:
        return False


def terminal_ask() -> Callable[[str], bool] | None:
    """``ask_on_terminal`` when stdin and stderr are a terminal (a person can answer), else None."""
    import sys

    return ask_on_terminal if sys.stdin.isatty() and sys.stderr.isatty() else None
