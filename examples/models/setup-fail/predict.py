"""setup-fail: setup() raises, so the model server never becomes ready (SETUP_FAILED)."""

from cog import BaseRunner


class Runner(BaseRunner):
    def setup(self) -> None:
        print("loading weights", flush=True)
        raise RuntimeError("weights not found: this model fails its setup on purpose")

    def run(self) -> str:
        return "unreachable"
