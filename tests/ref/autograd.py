"""PyTorch reference for samples/autograd.c: the autograd tutorials
(/work/shared/tutorials 002 and 004) line for line. Run from the repository root
with Debian's python3-torch:
    /usr/bin/python3 tests/ref/autograd.py > tests/expected/autograd.txt

Kiln has no requires_grad: it differentiates only when kiln_grad is asked, so
computed values print detached (no grad_fn, no requires_grad=True), and a
gradient is printed as the .grad PyTorch's backward() leaves on a leaf.
The one error prints Kiln's function name and PyTorch's message."""
import torch

first = True


def section(title):
    global first
    if not first:
        print()
    first = False
    print("== " + title + " ==")


def show(label, t):
    """A label, then the tensor on its own lines."""
    print(label)
    print(t.detach())


def inline(label, t):
    """print(label, t): the label and the tensor on one line."""
    print(label, t.detach())


def error(fn, thunk):
    try:
        thunk()
        print(fn + ": no error")
    except RuntimeError as e:
        print(fn + ": " + str(e))


torch.manual_seed(42)

section("Gradient of a mean")
x = torch.ones(2, 2, requires_grad=True)
show("x = torch.ones(2, 2, requires_grad=True)", x)
y = x + 2
show("y = x + 2", y)
z = y * y * 3
show("z = y * y * 3", z)
out = z.mean()
inline("out = z.mean():", out)
out.backward()
show("x.grad", x.grad)

section("Gradient of a sum")
x = torch.ones(3, 2, requires_grad=True)
z = torch.sum((x + 5) ** 2 + 1)
inline("z = torch.sum((x + 5) ** 2 + 1):", z)
z.backward()
show("x.grad", x.grad)

section("Partial derivatives")
x = torch.tensor(2.0, requires_grad=True)
y = torch.tensor(1.0, requires_grad=True)
z = 2 * x**2 + 3 * y**3
inline("z = 2 * x**2 + 3 * y**3:", z)
z.backward()
inline("dz/dx", x.grad)
inline("dz/dy", y.grad)

section("Basic grad")
a = torch.tensor(1.0, requires_grad=True)
b = a**2
c = 5 * b
inline("c = 5 * a**2:", c)
c.backward()
inline("a.grad", a.grad)

section("Tensor operations and gradients")
x = torch.tensor(3.0)
w = torch.tensor(4.0, requires_grad=True)
b = torch.tensor(5.0, requires_grad=True)
y = w * x + b
inline("y = w * x + b:", y)
y.backward()
print("dy/dx", x.grad)
inline("dy/dw", w.grad)
inline("dy/db", b.grad)

section("Non-scalar backward")
x = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
y = x * 2
show("y = x * 2", y)
v = torch.tensor([0.1, 1.0, 0.0001], dtype=torch.float32)
y.backward(v)
show("x.grad after y.backward(torch.tensor([0.1, 1.0, 0.0001]))", x.grad)
x = torch.rand(3, requires_grad=True)
y = x + 2
v = torch.tensor([0.1, 0.1, 0.001])
y.backward(v)
show("x.grad after (torch.rand(3) + 2).backward(torch.tensor([0.1, 0.1, 0.001]))", x.grad)

section("Prevent gradient history")
x = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
show("x.detach()", x.detach())
(x * x).sum().backward()
show("x.grad of (x * x).sum()", x.grad)
x.grad = None
(x * x.detach()).sum().backward()
show("x.grad of (x * x.detach()).sum()", x.grad)
x.grad = None
((x * x).detach() * x).sum().backward()
show("x.grad of ((x * x).detach() * x).sum()", x.grad)
with torch.no_grad():
    y = x + 2
show("with torch.no_grad(): y = x + 2", y)

section("Reset grad")
weights = torch.ones(4, requires_grad=True)
for epoch in range(3):
    model_output = (weights * 3).sum()
    model_output.backward()
    show(f"epoch {epoch}: weights.grad", weights.grad)
    weights.grad.zero_()

section("Errors")
a = torch.tensor([1.0, 1.0], requires_grad=True)
b = a**2
error("kiln_grad", lambda: b.backward())
