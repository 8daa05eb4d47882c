"""PyTorch reference for samples/tensor_basics.c: the tensor tutorials
(/work/shared/tutorials 001 and 003) line for line. Run from the repository root
with Debian's python3-torch:
    /usr/bin/python3 tests/ref/tensor_basics.py > tests/expected/tensor_basics.txt

Random tensors print their shape, dtype and a property that holds for any
stream, never their values: Kiln draws from Philox, PyTorch from mt19937.
Errors print Kiln's function name and PyTorch's message."""
import torch
import torch.nn.functional as F

first = True


def section(title):
    global first
    if not first:
        print()
    first = False
    print("== " + title + " ==")


def show(label, t):
    print(label)
    print(t)


def value(label, t):
    print(label, t.item())


def error(fn, thunk):
    try:
        thunk()
        print(fn + ": no error")
    except RuntimeError as e:
        print(fn + ": " + str(e))


torch.manual_seed(42)

section("Initialize tensors")
show("torch.arange(start=0, end=10, step=1)", torch.arange(start=0, end=10, step=1))
show("torch.ones(3, 2)", torch.ones(3, 2))
show("torch.zeros(3, 2)", torch.zeros(3, 2))
x = torch.rand(3, 2)
print(f"x = torch.rand(3, 2): shape {x.shape}, dtype {x.dtype}")
show("x.min() >= 0", x.min() >= 0)
show("x.max() < 1", x.max() < 1)
show("torch.zeros_like(x)", torch.zeros_like(x))
show("torch.ones_like(x)", torch.ones_like(x))
r = torch.rand_like(x)
print(f"torch.rand_like(x): shape {r.shape}, dtype {r.dtype}")
some_tensor = torch.rand(3, 4)
print(f"Shape of tensor: {some_tensor.shape}")
print(f"Datatype of tensor: {some_tensor.dtype}")
n = torch.randn(5, 3)
print(f"n = torch.randn(5, 3): shape {n.shape}, dtype {n.dtype}")
show("n.abs().max() < 10", n.abs().max() < 10)
show("torch.linspace(0, 1, steps=5)", torch.linspace(0, 1, steps=5))
show("torch.full((2, 3), 7.)", torch.full((2, 3), 7.0))
show("torch.tensor([5.5, 3])", torch.tensor([5.5, 3]))
x = torch.tensor([[1, 2], [3, 4], [5, 6]])
show("x = torch.tensor([[1, 2], [3, 4], [5, 6]])", x)
print(f"x.size(): {x.size()}")

section("Data types")
d = torch.ones(5, 3, dtype=torch.float64)
show("torch.ones(5, 3, dtype=torch.float64)", d)
print(f"dtype: {d.dtype}")
show("torch.arange(5, dtype=torch.int32)", torch.arange(5, dtype=torch.int32))
f = torch.tensor([1.7, -1.7, 2.5, -0.5])
show("f = torch.tensor([1.7, -1.7, 2.5, -0.5])", f)
show("f.to(torch.int64)", f.to(torch.int64))
show("f.to(torch.int32)", f.to(torch.int32))
show("f.to(torch.float64)", f.to(torch.float64))
show("(f > 0).to(torch.float32)", (f > 0).to(torch.float32))
show("torch.arange(5) / 2", torch.arange(5) / 2)
show("torch.arange(5) * 0.5", torch.arange(5) * 0.5)
show("f.to(torch.float64) + f", f.to(torch.float64) + f)

section("Slicing")
show("x", x)
show("x[:, 1]", x[:, 1])
show("x[0, :]", x[0, :])
show("x[1, 1]", x[1, 1])
value("x[1, 1].item():", x[1, 1])
show("x[1:]", x[1:])
show("x[::2]", x[::2])
show("x[:, -1]", x[:, -1])
x3 = torch.arange(1, 10).reshape(1, 3, 3)
show("x3 = torch.arange(1, 10).reshape(1, 3, 3)", x3)
print(f"x3.shape: {x3.shape}")
show("x3[0]", x3[0])
show("x3[0][0]", x3[0][0])
value("x3[0][0][0]:", x3[0][0][0])
show("x3[:, 0]", x3[:, 0])
show("x3[:, :, 1]", x3[:, :, 1])
show("x3[:, 1, 1]", x3[:, 1, 1])
show("x3[0, 0, :]", x3[0, 0, :])
s = torch.tensor([-0.0352])
value("torch.tensor([-0.0352]).item():", s)

section("Reshaping")
show("x.view(2, 3)", x.view(2, 3))
show("x.view(6, -1)", x.view(6, -1))
r = torch.randn(4, 4)
print(r.size(), r.view(16).size(), r.view(-1, 8).size())
v = torch.tensor([1, 2, 3, 4])
show("v.unsqueeze(dim=0)", v.unsqueeze(dim=0))
show("v.unsqueeze(dim=1)", v.unsqueeze(dim=1))
t = torch.arange(6).reshape(1, 2, 1, 3)
print(f"t.shape: {t.shape}")
show("t.squeeze()", t.squeeze())
print(f"t.squeeze(0).shape: {t.squeeze(0).shape}")
img = torch.rand(size=(224, 224, 3))
print(f"Previous shape: {img.shape}")
print(f"New shape: {img.permute(2, 0, 1).shape}")
p = torch.arange(6).reshape(1, 2, 3)
show("p.permute(2, 0, 1)", p.permute(2, 0, 1))
show("x.T", x.T)
show("torch.stack([v, v])", torch.stack([v, v]))
show("torch.stack([v, v], dim=1)", torch.stack([v, v], dim=1))
show("torch.cat([x, x], dim=1)", torch.cat([x, x], dim=1))
show("torch.flatten(torch.arange(8).reshape(2, 2, 2))",
     torch.flatten(torch.arange(8).reshape(2, 2, 2)))

section("Arithmetic and broadcasting")
a = torch.ones(3, 2)
b = torch.ones(3, 2)
show("a + b", a + b)
show("a - b", a - b)
show("a * b", a * b)
m = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
show("m = torch.tensor([[1., 2.], [3., 4.]])", m)
show("m / 2", m / 2)
show("m ** 2", m**2)
show("m.sqrt()", m.sqrt())
show("-m", -m)
show("(-m).exp()", (-m).exp())
col = torch.arange(3).reshape(3, 1)
row = torch.arange(4)
show("col + row", col + row)
show("col * 10 + row", col * 10 + row)
show("m + torch.tensor([10., 20.])", m + torch.tensor([10.0, 20.0]))
show("torch.arange(4) + 0.5", torch.arange(4) + 0.5)
error("kiln_add", lambda: torch.ones(2, 3) + torch.ones(2, 4))

section("Comparisons")
show("v > 2", v > 2)
show("v == torch.tensor([1, 0, 3, 0])", v == torch.tensor([1, 0, 3, 0]))
show("m <= 2", m <= 2)
show("torch.where(v > 2, v, 0)", torch.where(v > 2, v, 0))

section("Matrix multiplication")
A = torch.arange(6.0).reshape(2, 3)
B = torch.arange(6.0).reshape(3, 2)
show("A @ B", A @ B)
show("B @ A", B @ A)
X = torch.rand(100, 4)
W = torch.rand(3, 4)
print(f"W.T.shape: {W.T.shape}")
print(f"X.matmul(W.T).shape: {X.matmul(W.T).shape}")
show("torch.tensor([1, 2, 3]) @ torch.tensor([4, 5, 6])",
     torch.tensor([1, 2, 3]) @ torch.tensor([4, 5, 6]))
show("A @ torch.tensor([1., 0., -1.])", A @ torch.tensor([1.0, 0.0, -1.0]))
show("torch.tensor([1., -1.]) @ A", torch.tensor([1.0, -1.0]) @ A)
P = torch.arange(12.0).reshape(2, 2, 3)
Q = torch.arange(12.0).reshape(2, 3, 2)
show("P @ Q", P @ Q)
show("P @ B", P @ B)
show("F.linear(A, w, b)",
     F.linear(A, torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]), torch.tensor([0.5, -0.5])))
error("kiln_matmul", lambda: torch.ones(3, 2) @ torch.ones(3, 2))

section("Aggregation")
x = torch.arange(0, 100, 10)
value("Minimum:", x.min())
value("Maximum:", x.max())
value("Mean:", x.type(torch.float32).mean())
value("Sum:", x.sum())
show("torch.max(x)", torch.max(x))
show("torch.min(x)", torch.min(x))
show("torch.mean(x.type(torch.float32))", torch.mean(x.type(torch.float32)))
show("torch.sum(x)", torch.sum(x))
error("kiln_mean", lambda: x.mean())
t = torch.arange(10, 100, 10)
show("Tensor:", t)
value("Index where max value occurs:", t.argmax())
value("Index where min value occurs:", t.argmin())
m = torch.tensor([[1.0, 5.0, 3.0], [4.0, 2.0, 6.0]])
show("m = torch.tensor([[1., 5., 3.], [4., 2., 6.]])", m)
show("m.sum(dim=0)", m.sum(dim=0))
show("m.sum(dim=1)", m.sum(dim=1))
show("m.sum(dim=1, keepdim=True)", m.sum(dim=1, keepdim=True))
show("m.sum(dim=(0, 1))", m.sum(dim=(0, 1)))
show("m.mean(dim=0)", m.mean(dim=0))
show("m.mean()", m.mean())
show("m.max(dim=1).values", m.max(dim=1).values)
show("m.min(dim=0).values", m.min(dim=0).values)
show("m.argmax(dim=1)", m.argmax(dim=1))
show("m.argmin(dim=0)", m.argmin(dim=0))
show("m.argmax()", m.argmax())
value("m.max().item():", m.max())
