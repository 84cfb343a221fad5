"""fail: logs a line, then raises, so every prediction ends `failed` with the message."""

from cog import BaseRunner, Input


class Runner(BaseRunner):
    def run(
        self,
        message: str = Input(description="The error the prediction fails with.", default="this model always fails"),
    ) -> str:
        print("about to fail", flush=True)
        raise RuntimeError(message)
