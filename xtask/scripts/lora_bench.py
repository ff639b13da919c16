"""The reference for `cargo xtask bench lora`: one PyTorch + PEFT LoRA training step on the same
model file and token ids as Kokushi's bench (r 8, alpha 16, q_proj and v_proj, AdamW, dropout
0), on the CPU with the given thread count; the loss over the last ANSWER tokens (labels -100
elsewhere) and over every position. transformers dequantizes the GGUF file to f32.

    python xtask/scripts/lora_bench.py MODEL.gguf IDS.json THREADS ANSWER

Prints one JSON object with the median step time and the loss of every step of each variant.
"""

import json
import os
import statistics
import sys
import time

import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM

REPEATS = 5


def main(model_path, ids_path, threads, answer):
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    folder, name = os.path.split(os.path.abspath(model_path))
    base = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    config = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=["q_proj", "v_proj"],
                        task_type="CAUSAL_LM")
    model = get_peft_model(base, config)
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    ids = torch.tensor([json.load(open(ids_path))])
    out = {"torch": torch.__version__, "threads": threads}
    for variant, labels in [("answer", ids.clone()), ("all", ids.clone())]:
        if variant == "answer":
            labels[0, : ids.shape[1] - answer] = -100
        times = []
        losses = []
        for step in range(REPEATS + 1):
            started = time.perf_counter()
            loss = model(input_ids=ids, labels=labels).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad()
            if step > 0:
                times.append(time.perf_counter() - started)
            losses.append(loss.item())
            print(f"{variant}: step {step}: {time.perf_counter() - started:.3f} s, loss {float(loss):.4f}",
                  file=sys.stderr)
        out[f"{variant}_step_s"] = statistics.median(times)
        out[f"{variant}_losses"] = losses
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
