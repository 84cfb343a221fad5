"""noise: answers random numbers, different every time: a model whose output varies and has
no seed input to fix it. Async, so COG_MAX_CONCURRENCY slots run side by side."""

import random

import cog
from cog import BaseRunner, Input


class Runner(BaseRunner):
    @cog.concurrent(max=64)
    async def run(
        self,
        count: int = Input(description="How many numbers to answer.", default=16, ge=1, le=1024),
    ) -> list[float]:
        rng = random.SystemRandom()
        return [rng.uniform(-1.0, 1.0) for _ in range(count)]
