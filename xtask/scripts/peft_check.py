"""The PEFT interop check, the reference half: load each adapter Kokushi trained (written by
`engine/examples/peft-interop.rs`) with Hugging Face PEFT onto the fixture's Hugging Face
folder and compare the next-token log-probabilities with the engine's.

    python xtask/scripts/peft_check.py DIR      (cargo xtask peft-check runs it)

Prints one JSON object: per case the largest absolute difference in log-probabilities and
whether it is within tolerance, and whether PEFT reported any missing or unexpected keys.
"""

import json
import sys

import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM

TOLERANCE = 1e-3


def main(folder):
    torch.manual_seed(0)
    ours = json.load(open(f"{folder}/ours.json"))
    out = {}
    for case, mine in ours.items():
        base = AutoModelForCausalLM.from_pretrained(
            f"{folder}/{case}/model", dtype=torch.float32, attn_implementation="eager"
        )
        model = PeftModel.from_pretrained(base, f"{folder}/{case}/adapter")
        model.eval()
        loaded = [n for n, _ in model.named_parameters() if "lora_" in n]
        with torch.no_grad():
            logits = model(torch.tensor([mine["tokens"]])).logits[0, -1]
        logprobs = torch.log_softmax(logits.double(), dim=-1)
        diff = max(abs(float(a) - b) for a, b in zip(logprobs, mine["logprobs"]))
        out[case] = {
            "max_abs_diff": diff,
            "ok": diff <= TOLERANCE,
            "lora_tensors_loaded": len(loaded),
            "adapter_moved_base_by": mine["adapter_moved_base_by"],
        }
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1])
