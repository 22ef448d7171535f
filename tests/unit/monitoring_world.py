"""A small synthetic comment stream for the monitoring tests: texts, metadata, labels, scores.

Words follow a Zipf law over a made-up vocabulary; every text has a topic (toxic
texts mostly the second one) whose words it draws, so n-grams cluster within
texts as in real comments. Scores are Beta-distributed per label. Every knob a
drift scene turns is a field: the toxic share, the text length, the share of
texts carrying unseen words, a shift of the scores.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from mlcycle.featurization.config import CharConfig, FeatureConfig, WordConfig
from mlcycle.featurization.transform import Transform, fit

SYLLABLES = ["ka", "lo", "mi", "ne", "ru", "sa", "to", "vi", "de", "po", "ga", "fu", "he", "ji"]
VOCABULARY = 1500
SITES = ["news", "sport", "games", "music", "other"]
SITE_SHARES = [0.4, 0.25, 0.2, 0.1, 0.05]


def _words(count: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    found: dict[str, None] = {}
    while len(found) < count:
        found["".join(rng.choice(SYLLABLES, rng.integers(2, 5)))] = None
    return np.array(list(found))


WORDS = _words(VOCABULARY, 7)
_ZIPF = 1.0 / np.arange(1, VOCABULARY + 1) ** 1.1
_ZIPF /= _ZIPF.sum()
# Each topic ranks the vocabulary its own way.
_TOPICS = [np.random.default_rng(11 + t).permutation(VOCABULARY) for t in range(2)]


@dataclass(frozen=True)
class World:
    """How the stream looks; a drift scene is a World with one field changed."""

    toxic: float = 0.3
    mean_words: float = 12.0
    unseen: float = 0.0  # share of texts with a burst of never-seen words
    score_shift: float = 0.0  # added to every score (then clipped to [0, 1])

    def drifted(self, **changes: float) -> World:
        return replace(self, **changes)

    def sample(
        self, n: int, rng: np.random.Generator
    ) -> tuple[list[str], list[dict], np.ndarray, np.ndarray]:
        """``n`` records: texts, metadata, labels (0/1) and served scores."""
        labels = (rng.random(n) < self.toxic).astype(np.int64)
        topic = np.where(rng.random(n) < np.where(labels == 1, 0.8, 0.2), 1, 0)
        lengths = 1 + rng.geometric(1.0 / self.mean_words, n)
        ranks = rng.choice(VOCABULARY, size=int(lengths.sum()), p=_ZIPF)
        per_word_topic = np.repeat(topic, lengths)
        tokens = WORDS[np.where(per_word_topic == 1, _TOPICS[1][ranks], _TOPICS[0][ranks])]
        bounds = np.r_[0, np.cumsum(lengths)]
        texts = [" ".join(tokens[bounds[i] : bounds[i + 1]]) for i in range(n)]
        if self.unseen:
            for i in np.flatnonzero(rng.random(n) < self.unseen).tolist():
                novel = " ".join(f"zx{rng.integers(10**6)}q" for _ in range(4))
                texts[i] = f"{texts[i]} {novel}"
        hours = rng.integers(0, 24, n)
        sites = rng.choice(len(SITES), size=n, p=SITE_SHARES)
        metadata = [{"hour": int(h), "site": SITES[s]} for h, s in zip(hours, sites, strict=True)]
        scores = np.where(labels == 1, rng.beta(5, 2, n), rng.beta(1, 6, n))
        scores = np.clip(scores + self.score_shift, 0.0, 1.0)
        return texts, metadata, labels, scores


def transform_for(world: World, rng: np.random.Generator, rows: int = 3000) -> Transform:
    """A small vocabulary transform fitted on the world's texts (no char n-grams: faster)."""
    texts, metadata, _, _ = world.sample(rows, rng)
    config = FeatureConfig(
        word=WordConfig(ngram_max=2, min_count=2, max_size=20_000),
        char=CharConfig(enabled=False),
    )
    return fit(texts, metadata, config)
