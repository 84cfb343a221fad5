"""sleep: waits the given number of seconds, then answers. Async, so cancellation takes
effect at once and COG_MAX_CONCURRENCY slots can sleep side by side."""

import asyncio

import cog
from cog import BaseRunner, Input


class Runner(BaseRunner):
    @cog.concurrent(max=64)
    async def run(
        self,
        seconds: float = Input(description="How long to sleep, in seconds.", default=1.0, ge=0, le=3600),
    ) -> str:
        print(f"sleeping {seconds} s", flush=True)
        await asyncio.sleep(seconds)
        print("awake", flush=True)
        return f"slept {seconds} s"
