"""PyTorch reference for samples/quickstart.c (the README's first program).
Run from the repository root with Debian's python3-torch:
    /usr/bin/python3 tests/ref/quickstart.py > tests/expected/quickstart.txt"""
import torch

x = torch.tensor([[1, 0, 0], [0, 0.5, 0.25]])
w = torch.arange(0, 6, 1, dtype=torch.float32)
y = x @ w.reshape(3, 2)
print(torch.softmax(y, -1))
