"""tokens: a stand-in for a language model that records the units it would be priced by.
It answers with the prompt's words in reverse order, `max_tokens` at most, and records
`input_token_count` (the prompt's words) and `output_token_count` (the words it answered)
with Cog's `record_metric`, the way hosted language models report their tokens."""

from cog import BaseRunner, Input


class Runner(BaseRunner):
    def run(
        self,
        prompt: str = Input(description="Words, separated by spaces: each one counts as a token."),
        max_tokens: int = Input(description="Most words to answer with.", default=16, ge=0, le=1024),
    ) -> str:
        words = prompt.split()
        answer = list(reversed(words))[:max_tokens]
        self.record_metric("input_token_count", len(words))
        self.record_metric("output_token_count", len(answer))
        return " ".join(answer)
