"""echo: returns its input text. Async, so one server can run several predictions at once
(COG_MAX_CONCURRENCY sets the slots)."""

import cog
from cog import BaseRunner, Input


class Runner(BaseRunner):
    @cog.concurrent(max=64)
    async def run(
        self,
        text: str = Input(description="Text to return."),
        repeat: int = Input(description="How many times to repeat the text.", default=1, ge=1, le=100),
    ) -> str:
        print(f"echo: {len(text)} characters, {repeat} times", flush=True)
        return text * repeat
