"""Reference logits of the engine's fixture models, computed by Hugging Face transformers.

    cargo xtask fixtures /tmp/fx && python engine/tests/reference/logits.py /tmp/fx > engine/tests/reference/logits.json

Needs `pip install torch transformers safetensors peft` (CPU is enough). `adapted` holds the
logits with the fixture's PEFT LoRA adapter (`<arch>-adapter/`) loaded by PEFT itself. The engine's test
`transformer::tests::the_fixtures_match_the_reference_implementation` loads the same fixtures
(seed 11) from both their GGUF and folder forms and compares its logits with these.
"""

import json
import sys

import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM

ARCHITECTURES = ["llama", "qwen2", "gemma3"]
# 300 positions: past the Gemma 3 fixture's 256-position sliding window.
TOKENS = [40 + (i * 7 + 3 * 13) % 60 for i in range(300)]
POSITIONS = [0, 1, 17, 255, 256, 299]


def main(folder):
    torch.manual_seed(0)
    out = {"tokens": TOKENS, "positions": POSITIONS, "models": {}, "adapted": {}}
    for arch in ARCHITECTURES:
        model = AutoModelForCausalLM.from_pretrained(
            f"{folder}/{arch}-hf", dtype=torch.float32, attn_implementation="eager"
        )
        model.eval()
        with torch.no_grad():
            logits = model(torch.tensor([TOKENS])).logits[0]
        out["models"][arch] = [[round(float(v), 6) for v in logits[p]] for p in POSITIONS]
        adapted = PeftModel.from_pretrained(model, f"{folder}/{arch}-adapter")
        adapted.eval()
        with torch.no_grad():
            logits = adapted(torch.tensor([TOKENS])).logits[0]
        out["adapted"][arch] = [[round(float(v), 6) for v in logits[p]] for p in POSITIONS]
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main(sys.argv[1])
