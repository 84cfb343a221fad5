"""echo-upper: the `echo` example with one more input, `upper`. The check-inputs end-to-end
test applies it as the version of `echo` before the real echo, whose schema then drops
`upper`: a breaking change `modelplane check` must flag."""

import cog
from cog import BaseRunner, Input


class Runner(BaseRunner):
    @cog.concurrent(max=64)
    async def run(
        self,
        text: str = Input(description="Text to return."),
        repeat: int = Input(description="How many times to repeat the text.", default=1, ge=1, le=100),
        upper: bool = Input(description="Return the text in capitals.", default=False),
    ) -> str:
        return (text.upper() if upper else text) * repeat
