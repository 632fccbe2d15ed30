"""Turns a model call's token usage into US dollars.

Not workflow-safe (reads a file named in the environment). Prices are USD per
million tokens, input and output. Models not in the table (local and scripted ones) cost nothing.
`AIFACTORY_PRICING` may name a JSON file `{"model": [input, output], ...}`
that extends or overrides the defaults.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

DEFAULT_PRICES: dict[str, tuple[float, float]] = {
    "gpt-4o": (2.50, 10.00),
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
}


class Pricing:
    def __init__(self, prices: dict[str, tuple[float, float]] | None = None) -> None:
        self.prices = dict(DEFAULT_PRICES)
        path = os.environ.get("AIFACTORY_PRICING")
        if path:
            for model, pair in json.loads(Path(path).read_text()).items():
                self.prices[model] = (float(pair[0]), float(pair[1]))
        if prices:
            self.prices.update(prices)

    def cost(self, model: str, prompt_tokens: int, completion_tokens: int) -> float:
        price = self.prices.get(model)
        if price is None:
            # Longest known prefix: dated snapshots ("gpt-4o-2024-08-06") price as their family.
            matches = [m for m in self.prices if model.startswith(m)]
            price = self.prices[max(matches, key=len)] if matches else (0.0, 0.0)
        return round((prompt_tokens * price[0] + completion_tokens * price[1]) / 1_000_000, 10)
