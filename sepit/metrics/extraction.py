"""Reading a closed-set answer out of generated text. The only place this is done.

- yes/no (the official SEPIT rule): the last standalone "yes" or "no" in the text, case-insensitive; the
  official scorer applies it to the whole decoded text, prompt included, we to the answer alone.
- last option text: like yes/no, the last option named by its text (letters are not read).
- multiple choice: the last option the text names, by its letter or by its text. A letter counts where
  it stands as an answer: "(B)", "B." / "B)" / "B:" , a lone "B" at the end, or after "answer"/"option"
  ("Answer: B", "option B"); an upper-case letter starting a sentence ("A kinase ...") does not count.
  Option text matches whole words, case-insensitive; a match inside the match of a longer option
  ("membrane" inside "cell membrane") is not a separate answer.

No match returns None: the sample counts as wrong and is reported as an extraction failure.
"""

from __future__ import annotations

import re
from typing import Sequence

from sepit.data.sample import OPTION_LETTERS

_YES_NO = re.compile(r"\b(yes|no)\b", re.IGNORECASE)


def last_yes_no(text: str) -> str | None:
    """'yes', 'no' or None, from the last standalone yes/no (the official SEPIT rule, on the answer alone)."""
    matches = _YES_NO.findall(text)
    return matches[-1].lower() if matches else None


def multiple_choice(text: str, choices: Sequence[str]) -> str | None:
    """The chosen option's text, from the last option letter or option text in `text`, or None."""
    found = _letter_matches(text, choices) + _text_matches(text, choices)
    return max(found)[2] if found else None  # the match that ends last


def last_option_text(text: str, choices: Sequence[str]) -> str | None:
    """The option whose text the answer names last (no letters), or None: the plain last-match rule."""
    found = _text_matches(text, choices)
    return max(found)[2] if found else None


def _letter_matches(text: str, choices: Sequence[str]) -> list[tuple[int, int, str]]:
    letters = OPTION_LETTERS[:len(choices)]
    pattern = re.compile(
        rf"\(([{letters}])\)"                                   # (B)
        rf"|(?<!\w)([{letters}])(?=[.):](?:\s|$)|\s*$)"        # B.  B)  B:  or a lone B at the end
        rf"|(?i:answer|option)\s*(?:is\s*)?:?\s*([{letters}])\b"  # answer: B, option B
    )
    return [(m.end(), m.start(), choices[letters.index(next(g for g in m.groups() if g))])
            for m in pattern.finditer(text)]


def _text_matches(text: str, choices: Sequence[str]) -> list[tuple[int, int, str]]:
    lowered = text.lower()
    spans = [(m.end(), m.start(), choice) for choice in choices
             for m in re.finditer(rf"(?<!\w){re.escape(choice.lower())}(?!\w)", lowered)]
    return [(end, start, choice) for end, start, choice in spans
            if not any(s <= start and end <= e and (e - s) > (end - start) for e, s, _ in spans)]
