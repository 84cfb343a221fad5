"""stream: yields the words of the prompt one at a time, with a log line before each, like
a language model streaming tokens. A plain (sync) generator: the Cog server sends each item
as it is yielded."""

import time

from cog import BaseRunner, ConcatenateIterator, Input


class Runner(BaseRunner):
    def run(
        self,
        prompt: str = Input(description="Words to stream back, separated by spaces.", default="the quick brown fox"),
        delay: float = Input(description="Seconds to wait before each token.", default=0.05, ge=0, le=10),
    ) -> ConcatenateIterator[str]:
        for i, word in enumerate(prompt.split()):
            print(f"token {i}", flush=True)
            time.sleep(delay)
            yield word + " "
