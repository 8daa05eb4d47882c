#!/usr/bin/python3
"""Reference losses for samples/gpt.c (ctest sample_gpt), from PyTorch.

Reads the initial weights `gpt --save-init FILE` wrote (safetensors, parsed here:
8-byte header length, JSON header, little-endian f32 data) and the same text,
builds the same model (nanoGPT's layout; attention written out: torch 1.13 has
no F.scaled_dot_product_attention), trains 20 steps on the same windows with
AdamW (betas 0.9/0.95, weight decay 0.1 on the 2-D weights only) and
clip_grad_norm_(1.0), and writes one loss per line to tests/data/gpt_losses.txt.
Run with Debian's python3-torch (1.13):
  build/samples/gpt --steps 0 --generate 0 --save-init /tmp/gpt_init.st
  /usr/bin/python3 tests/ref/gpt_ref.py /tmp/gpt_init.st tests/data/gpt_losses.txt
"""
import json
import math
import struct
import sys

import torch
import torch.nn.functional as F

BLOCK, EMBED, HEADS, LAYERS, BATCH, STEPS = 32, 64, 4, 2, 16, 20
TEXT = "/usr/share/common-licenses/GPL-3"


def load_safetensors(path):
    raw = open(path, "rb").read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    data = raw[8 + n:]
    out = {}
    for name, t in header.items():
        if name == "__metadata__" or t["dtype"] != "F32":
            continue
        b, e = t["data_offsets"]
        vals = struct.unpack("<%df" % ((e - b) // 4), data[b:e])
        out[name] = torch.tensor(vals, dtype=torch.float32).reshape(t["shape"])
    return out


def main(init_path, out_path):
    text = open(TEXT, "rb").read()
    vocab = sorted(set(text))
    code = {c: i for i, c in enumerate(vocab)}
    p = {k: v.requires_grad_() for k, v in load_safetensors(init_path).items()
         if not k.startswith("train.") and ".exp_avg" not in k}
    d, hd = EMBED, EMBED // HEADS

    def forward(idx):
        n = idx.shape[0]
        h = p["wte"][idx] + p["wpe"]
        for l in range(LAYERS):
            q = "h.%d." % l
            a = F.linear(F.layer_norm(h, (d,), p[q + "ln_1.weight"], p[q + "ln_1.bias"], 1e-5),
                         p[q + "attn.c_attn.weight"], p[q + "attn.c_attn.bias"])
            qs, ks, vs = [a[:, :, i * d:(i + 1) * d].reshape(n, BLOCK, HEADS, hd).transpose(1, 2)
                          for i in range(3)]
            s = qs @ ks.transpose(-2, -1) * (1 / math.sqrt(hd))
            mask = torch.ones(BLOCK, BLOCK, dtype=torch.bool).tril()
            y = torch.softmax(s.masked_fill(~mask, float("-inf")), -1) @ vs
            y = y.transpose(1, 2).reshape(n, BLOCK, d)
            h = h + F.linear(y, p[q + "attn.c_proj.weight"], p[q + "attn.c_proj.bias"])
            m = F.layer_norm(h, (d,), p[q + "ln_2.weight"], p[q + "ln_2.bias"], 1e-5)
            m = F.gelu(F.linear(m, p[q + "mlp.c_fc.weight"], p[q + "mlp.c_fc.bias"]))
            h = h + F.linear(m, p[q + "mlp.c_proj.weight"], p[q + "mlp.c_proj.bias"])
        h = F.layer_norm(h, (d,), p["ln_f.weight"], p["ln_f.bias"], 1e-5)
        return F.linear(h, p["lm_head.weight"])

    decay = [t for k, t in p.items() if t.dim() >= 2]
    no_decay = [t for k, t in p.items() if t.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=1e-3, betas=(0.9, 0.95), eps=1e-8)
    with open(out_path, "w") as out:
        out.write("# made by tests/ref/gpt_ref.py with torch %s: the loss of steps 1..%d\n"
                  % (torch.__version__, STEPS))
        for s in range(STEPS):
            xs, ys = [], []
            for b in range(BATCH):
                at = (s * BATCH + b) * 7919 % (len(text) - BLOCK - 1)
                xs.append([code[c] for c in text[at:at + BLOCK]])
                ys.append([code[c] for c in text[at + 1:at + BLOCK + 1]])
            logits = forward(torch.tensor(xs))
            loss = F.cross_entropy(logits.reshape(-1, len(vocab)), torch.tensor(ys).reshape(-1))
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(list(p.values()), 1.0)
            opt.step()
            out.write("%.7f\n" % loss.item())


main(sys.argv[1], sys.argv[2])
