"""Turn what a user types into a safe FTS5 query.

People type `"exact phrase"`, `prefix*`, `-unwanted`, accents, stray quotes and dashes. FTS5
has its own syntax and fails loudly on much of that, so the query is rebuilt from words only:
every word is quoted, so nothing a user types is ever FTS5 syntax of its own.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

_TOKEN = re.compile(r'-?"[^"]*"?|\S+')
_WORD = re.compile(r"\w+")


@dataclass
class Query:
    phrases: list[list[str]] = field(default_factory=list)  # each a run of words that must be adjacent
    words: list[str] = field(default_factory=list)  # words that must all appear, anywhere
    prefixes: list[str] = field(default_factory=list)  # word starts that must appear
    excluded: list[list[str]] = field(default_factory=list)  # words or phrases that must not

    @property
    def empty(self) -> bool:
        return not (self.phrases or self.words or self.prefixes)

    def terms(self) -> list[str]:
        """Every positive word, folded, in the order typed (for the phrase bonus)."""
        return [fold(w) for w in self.words] + [fold(w) for p in self.phrases for w in p]

    def match(self) -> str:
        """All of it: phrases, words and prefixes ANDed, exclusions NOTed."""
        parts = [_quote(p) for p in self.phrases] + [_quote([w]) for w in self.words]
        parts += [_quote([p]) + "*" for p in self.prefixes]
        expression = " AND ".join(parts)
        if self.excluded:
            expression = f"({expression}) NOT ({' OR '.join(_quote(x) for x in self.excluded)})"
        return expression

    def as_phrase(self) -> str | None:
        """The typed words as one phrase (ranked first: the exact phrase beats scattered words)."""
        words = self.words if not self.phrases and not self.prefixes else []
        if len(words) < 2:
            return None
        phrase = _quote(words)
        if self.excluded:
            phrase = f"({phrase}) NOT ({' OR '.join(_quote(x) for x in self.excluded)})"
        return phrase


def parse(text: str) -> Query:
    query = Query()
    for token in _TOKEN.findall(text or ""):
        negative = token.startswith("-")
        if negative:
            token = token[1:]
        quoted = token.startswith('"')
        words = _WORD.findall(token)
        if not words:
            continue
        if negative:
            query.excluded.append(words)
        elif quoted and len(words) > 1:
            query.phrases.append(words)
        elif token.endswith("*") and len(words) == 1:
            query.prefixes.append(words[0])
        else:
            query.words.extend(words)
    return query


def fold(word: str) -> str:
    """Lower case without diacritics, as the index's tokenizer (unicode61 remove_diacritics 2) sees it."""
    decomposed = unicodedata.normalize("NFKD", word.lower())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def _quote(words: list[str]) -> str:
    return '"' + " ".join(words) + '"'  # \w+ words only: nothing left to escape
