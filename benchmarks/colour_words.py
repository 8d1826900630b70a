"""Colour words the prior never learnt: which world colour each is read as, and what the prior then draws.

    python benchmarks/colour_words.py

1. Over the 40 words and phrases of ``dreamlift.evaluate.suite.COLOUR_WORDS_V1`` (30 held-out caption words and
   10 everyday ones, each with the world colour a person names it): the share the colour tables map to that
   colour (``dreamlift.prior.colour_words``), against the share the text encoder alone placed nearest it (the
   rewrite before the tables: the nearest canonical prompt "a <colour> <noun>" by sentence embedding).
2. For 16 of them (every fifth word from the first and from the second: a rule fixed before any sample was
   drawn), "a <word> <noun>" (the noun cycles through the categories) is sampled by the shipped prior three
   ways: conditioned on the tables' rewrite (what dreamlift does now), on the encoder's nearest colour (what it
   did before) and on the prompt as typed (--keep-unknown-words). The independent evaluator names each
   sample's colour; the table gives the share of samples in the colour a person names.
"""

from __future__ import annotations

import argparse

import torch
from report import write_section

from dreamlift.evaluate.classifier import Evaluator
from dreamlift.evaluate.suite import COLOUR_WORDS_V1
from dreamlift.prior.colour_words import lookup
from dreamlift.prior.model import BuiltinPrior
from dreamlift.world import CATEGORIES, COLOUR_NAMES
from dreamlift.world.captions import CATEGORY_SYNONYMS, canonical_prompt


def article(text: str) -> str:
    return ("an " if text[0] in "aeiou" else "a ") + text


def variant_colour(word: str, **rules) -> str | None:
    """The world colour of ``word`` under the shipped rules of dreamlift.prior.colour_words.lookup with ``rules``
    changed (for the decision page): another table order, CIE76 instead of CIEDE2000, black for any colour, no
    head-word rule."""
    match = lookup(word, **rules)
    return match.colour if match else None


VARIANTS = {"shipped: XKCD then CSS4, CIEDE2000, black only near-neutral, head words": {},
            "CSS4 before XKCD": {"order": ("css4", "xkcd")},
            "CIE76 (Euclidean in CIELAB) instead of CIEDE2000": {"metric": "cie76"},
            "black a candidate for every colour": {"black_rule": False},
            "no head-word rule ('navy blue' looked up whole)": {"heads": False}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=16, help="samples per prompt and way")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--guidance", type=float, default=3.0)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(2)

    prior = BuiltinPrior()
    raw = BuiltinPrior(encoder=prior.encoder, rewrite_unknown_words=False)
    enc = prior.encoder
    rows = []
    for i, (word, want) in enumerate(COLOUR_WORDS_V1):
        cat = CATEGORIES[i % len(CATEGORIES)]
        prompt = article(f"{word} {CATEGORY_SYNONYMS[cat][0]}")
        match = lookup(word)
        sims = enc.similarity([prompt], [canonical_prompt(cat, c) for c in COLOUR_NAMES])[0]
        rows.append({"word": word, "want": want, "category": cat, "prompt": prompt,
                     "table": match.colour if match else None, "source": match.source if match else None,
                     "name": match.name if match else None, "hex": match.hex if match else None,
                     "encoder": COLOUR_NAMES[int(sims.argmax())], "rewrite": prior.rewrite(prompt).text})
    n = len(rows)
    table_ok = sum(r["table"] == r["want"] for r in rows)
    enc_ok = sum(r["encoder"] == r["want"] for r in rows)

    variants = {name: sum(variant_colour(w, **kw) == want for w, want in COLOUR_WORDS_V1)
                for name, kw in VARIANTS.items()}
    chosen = [rows[i] for i in list(range(0, 40, 5)) + list(range(1, 40, 5))]
    ev = Evaluator()
    ways = {"tables (now)": lambda r: (prior, r["rewrite"]),
            "encoder's nearest (before)": lambda r: (raw, canonical_prompt(r["category"], r["encoder"])),
            "as typed": lambda r: (raw, r["prompt"])}
    share = {}
    for way, pick in ways.items():
        for r in chosen:
            model, text = pick(r)
            images = model.sample([text], n_per_prompt=args.n, steps=args.steps, guidance_scale=args.guidance,
                                  seed=args.seed, method="ddpm")
            colour = ev.predict(images).colour.argmax(-1)
            r.setdefault("samples", {})[way] = {"conditioned_on": text,
                                                "right": float((colour == COLOUR_NAMES.index(r["want"])).float().mean())}
        share[way] = sum(r["samples"][way]["right"] for r in chosen) / len(chosen)

    lines = [f"Mapping, {n} words and phrases (`COLOUR_WORDS_V1`): the colour tables give the colour a person "
             f"names for **{table_ok} of {n}**; the text encoder's nearest canonical prompt did for {enc_ok} of {n}.",
             "", "| word | person | tables | source (name, sRGB) | encoder |", "|---|---|---|---|---|"]
    for r in rows:
        src = f"{r['source']} ({r['name']}, {r['hex']})" if r["hex"] else (r["source"] or "none")
        mark = lambda c: f"**{c}**" if c == r["want"] else str(c)  # noqa: E731
        lines.append(f"| {r['word']} | {r['want']} | {mark(r['table'])} | {src} | {mark(r['encoder'])} |")
    lines += ["", "The rules compared (the same 40 words; each row changes one rule):", "",
              "| rules | right of 40 |", "|---|---|"] + [f"| {k} | {v} |" for k, v in variants.items()]
    lines += ["", f"Samples: {len(chosen)} of the words, {args.n} samples each way (DDPM, {args.steps} steps, "
              f"guidance {args.guidance}, seed {args.seed}), colour named by the evaluator; the share of samples in "
              "the colour a person names:", "",
              "| way | share of samples in the right colour |", "|---|---|"]
    lines += [f"| {way} | {v:.0%} |" for way, v in share.items()]
    lines += ["", "| prompt | person | " + " | ".join(ways) + " |", "|---|---|" + "---|" * len(ways)]
    for r in chosen:
        cells = [f"{r['samples'][w]['right']:.0%} ({r['samples'][w]['conditioned_on']})" for w in ways]
        lines.append(f"| {r['prompt']} | {r['want']} | " + " | ".join(cells) + " |")
    write_section("colour-words", "Colour words: the colour tables against the text encoder, and the prior's "
                  "samples", "\n".join(lines),
                  data={"mapping": rows, "table_right": table_ok, "encoder_right": enc_ok, "n": n, "variants": variants,
                        "sample_share": share, "settings": vars(args)})
    print("\n".join(lines[:1] + lines[-len(chosen) - 8:]))


if __name__ == "__main__":
    main()
