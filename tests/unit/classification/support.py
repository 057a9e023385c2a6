"""Small deterministic datasets and a fake encoder for fast classification unit tests."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt

from switchboard_server.classification.dataset import Example

PHRASES = {
    "alarm/set": ["wake me up at {}", "set an alarm for {}", "alarm at {} please"],
    "alarm/remove": ["cancel my {} alarm", "delete the alarm at {}", "remove alarm {}"],
    "weather/query": ["what is the weather at {}", "will it rain at {}", "forecast for {}"],
    "music/play": ["play some {} music", "put on {} songs", "start the {} playlist"],
    "lights/on/kitchen": ["turn on the kitchen light at {}", "kitchen lights on {}"],
}
FILLERS = ["seven", "noon", "six am", "jazz", "friday", "tonight", "monday", "eight"]


def small_examples() -> list[Example]:
    return [
        Example(phrase.format(filler), intent)
        for intent, phrases in PHRASES.items()
        for phrase in phrases
        for filler in FILLERS
    ]


class FakeEncoder:
    """Deterministic bag-of-words hashing into 64 dimensions, L2-normalised."""

    dimension = 64

    def __init__(self) -> None:
        self.calls = 0

    def encode(
        self, texts: Sequence[str], progress: Callable[[int], None] | None = None
    ) -> npt.NDArray[np.float32]:
        self.calls += 1
        out = np.zeros((len(texts), self.dimension), np.float32)
        for row, text in enumerate(texts):
            for word in text.lower().split():
                bucket = int(hashlib.md5(word.encode()).hexdigest(), 16) % self.dimension
                out[row, bucket] += 1.0
        out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        if progress is not None:
            progress(len(texts))
        return out
