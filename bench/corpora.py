"""Made-up documents shared by the benches and the tests (tests/conftest.py puts bench/ on the path)."""

from __future__ import annotations

import random


def long_markdown(min_words: int, seed: int = 5) -> str:
    """A made-up town chronicle in chapters, different in every sentence."""
    rng = random.Random(seed)
    towns = ["Ashford", "Brookmere", "Caldwell", "Dunmore", "Elmstead", "Fairhaven", "Glenrock", "Harlow"]
    people = ["the mayor", "a baker", "the council", "two teachers", "a fisherman", "the doctor", "farmers"]
    acts = ["built a bridge over", "argued about", "repaired the mill near", "planted orchards along",
            "opened a school beside", "held a market in", "mapped the marshes of", "sold wool in"]
    things = ["after the floods", "before the harvest", "during a cold winter", "with borrowed money",
              "to everyone's surprise", "despite the drought", "for the first time", "as the railway came"]
    lines, words, chapter = [], 0, 0
    while words < min_words:
        chapter += 1
        town = rng.choice(towns)
        lines.append(f"## Chapter {chapter}: {town}")
        for _ in range(6):
            paragraph = " ".join(
                f"In {rng.randint(1700, 1950)}, {rng.choice(people)} of {town} {rng.choice(acts)} "
                f"{rng.choice(towns)} {rng.choice(things)}." for _ in range(5))
            lines.append(paragraph)
            words += len(paragraph.split())
    return "# The Chronicle of the Eight Towns\n\n" + "\n\n".join(lines) + "\n"
