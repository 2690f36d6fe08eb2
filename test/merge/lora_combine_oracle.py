"""PEFT's own add_weighted_adapter on the test's tiny adapters: prints each combined module's
delta (get_delta_weight, which applies the new adapter's scaling) as JSON lists.
usage: lora_combine_oracle.py METHOD RANK|0 DIR:WEIGHT..."""
import json
import sys

import torch
from torch import nn
from peft import PeftModel


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.q_proj = nn.Linear(10, 12, bias=False)
        self.v_proj = nn.Linear(10, 8, bias=False)


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = nn.ModuleList([Block()])

    def forward(self, x):
        return self.layers[0].q_proj(x)


def main():
    method, rank = sys.argv[1], int(sys.argv[2])
    inputs = [a.rsplit(":", 1) for a in sys.argv[3:]]
    torch.manual_seed(0)
    model = PeftModel.from_pretrained(Tiny().double(), inputs[0][0], adapter_name="a0")
    for i, (d, _) in enumerate(inputs[1:], 1):
        model.load_adapter(d, adapter_name=f"a{i}")
    model = model.double()
    names = [f"a{i}" for i in range(len(inputs))]
    weights = [float(w) for _, w in inputs]
    kw = {"svd_rank": rank} if method == "svd" and rank > 0 else {}
    model.add_weighted_adapter(names, weights, "c", combination_type=method, **kw)
    out = {}
    for name, mod in model.named_modules():
        if hasattr(mod, "lora_A") and "c" in mod.lora_A:
            out[name.replace("base_model.model.", "")] = mod.get_delta_weight("c").double().tolist()
    print(json.dumps(out))


main()
