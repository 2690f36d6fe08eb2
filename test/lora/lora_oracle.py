"""Independent checks for the LoRA tests, in numpy and PEFT.

  svd BASE FT NAME R...      exact energy shares of Δ = FT − BASE at ranks R (numpy SVD, float64)
  product ADAPTER MODULE R?  the float64 truncated SVD of scale·B·A at rank R (all when omitted), as JSON
  peft BASE ADAPTER          PEFT loads ADAPTER onto a module tree holding BASE's weights and merges it;
                             prints, per module, max |merged − (BASE + scale·B·A)| and the scale PEFT used
"""
import json
import sys

import numpy as np
from safetensors.numpy import load_file


def svd_energy(base, ft, name, ranks):
    d = load_file(ft)[name].astype(np.float64) - load_file(base)[name].astype(np.float64)
    s = np.linalg.svd(d, compute_uv=False)
    total = float((s ** 2).sum())
    print(json.dumps({str(r): float((s[:r] ** 2).sum()) / total for r in ranks}))


def peft_merge(base, adapter):
    import torch
    from peft import PeftModel

    weights = load_file(base)
    root = torch.nn.Module()
    for name, w in weights.items():
        parts = name.split(".")
        node = root
        for p in parts[:-2]:
            if not hasattr(node, p):
                node.add_module(p, torch.nn.Module())
            node = getattr(node, p)
        if parts[-1] == "weight" and w.ndim == 2:
            lin = torch.nn.Linear(w.shape[1], w.shape[0], bias=False)
            with torch.no_grad():
                lin.weight.copy_(torch.from_numpy(w.astype(np.float32)))
            node.add_module(parts[-2], lin)
    model = PeftModel.from_pretrained(root, adapter)
    cfg = json.load(open(f"{adapter}/adapter_config.json"))
    factors = load_file(f"{adapter}/adapter_model.safetensors")
    scales = {}
    for name, mod in model.named_modules():
        if hasattr(mod, "scaling") and isinstance(mod.scaling, dict) and "default" in mod.scaling:
            scales[name.replace("base_model.model.", "")] = float(mod.scaling["default"])
    merged = model.merge_and_unload()
    out = {}
    state = {k: v.detach().numpy().astype(np.float64) for k, v in merged.state_dict().items()}
    for key in factors:
        if not key.endswith("lora_A.weight"):
            continue
        module = key[len("base_model.model."):-len(".lora_A.weight")]
        a = factors[key].astype(np.float64)
        b = factors[key.replace("lora_A", "lora_B")].astype(np.float64)
        expected = weights[module + ".weight"].astype(np.float64) + scales[module] * (b @ a)
        out[module] = {"maxAbs": float(np.abs(state[module + ".weight"] - expected).max()), "scale": scales[module], "rank": a.shape[0]}
    print(json.dumps({"modules": out, "r": cfg["r"]}))


def product(adapter, module, rank):
    cfg = json.load(open(f"{adapter}/adapter_config.json"))
    f = load_file(f"{adapter}/adapter_model.safetensors")
    a = f[f"base_model.model.{module}.lora_A.weight"].astype(np.float64)
    b = f[f"base_model.model.{module}.lora_B.weight"].astype(np.float64)
    r = a.shape[0]
    # alpha_pattern keys name a module or a suffix of its path, as PEFT matches them.
    pattern = cfg.get("alpha_pattern") or {}
    keys = [k for k in pattern if module == k or module.endswith("." + k)]
    alpha = pattern[keys[0]] if keys else cfg["lora_alpha"]
    scale = alpha / (np.sqrt(r) if cfg.get("use_rslora") else r)
    u, s, vt = np.linalg.svd(scale * (b @ a), full_matrices=False)
    k = len(s) if rank is None else rank
    print(json.dumps({"product": (u[:, :k] * s[:k] @ vt[:k]).ravel().tolist(), "sigma": s.tolist()}))


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "svd":
        svd_energy(sys.argv[2], sys.argv[3], sys.argv[4], [int(x) for x in sys.argv[5:]])
    elif cmd == "peft":
        peft_merge(sys.argv[2], sys.argv[3])
    elif cmd == "product":
        product(sys.argv[2], sys.argv[3], int(sys.argv[4]) if len(sys.argv) > 4 else None)
