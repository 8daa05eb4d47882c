#!/usr/bin/python3
"""Expected output of samples/linear_regression.c, made with PyTorch in float32.

Part 1 is the tutorial's manual gradient descent (Y = 2X, w = 0, lr = 0.01,
the tutorial's gradient dot(2x, y_pred - y)) on float32 tensors; part 2 its
nn.Linear + MSELoss + SGD loop. nn.Linear starts from the params Kiln draws
for the sample (kaiming uniform from graph seed 0, printed by
`linear_regression --print-init`), since Kiln's generator is not PyTorch's.

/usr/bin/python3 tests/ref/linear_regression.py > tests/expected/linear_regression.txt
"""
import torch
import torch.nn as nn

# part 1: manual gradient descent
X = torch.tensor([1, 2, 3, 4], dtype=torch.float32)
Y = torch.tensor([2, 4, 6, 8], dtype=torch.float32)
w = torch.tensor(0.0, dtype=torch.float32)


def forward(x):
    return w * x


def loss(y, y_predicted):
    return ((y_predicted - y) ** 2).mean()


def gradient(x, y, y_predicted):
    return torch.dot(2 * x, y_predicted - y).mean()


print(f"Prediction before training: f(5) = {forward(5):.3f}")
learning_rate = 0.01
for epoch in range(20):
    y_pred = forward(X)
    l = loss(Y, y_pred)
    dw = gradient(X, Y, y_pred)
    w -= learning_rate * dw
    if epoch % 2 == 0:
        print(f"Epoch {epoch+1}: w = {w:.3f}, loss = {l:.8f}")
print(f"Prediction after training: f(5) = {forward(5):.3f}")
print()

# part 2: nn.Linear + MSELoss + SGD
X = torch.tensor([[1], [2], [3], [4]], dtype=torch.float32)
Y = torch.tensor([[2], [4], [6], [8]], dtype=torch.float32)
X_test = torch.tensor([5], dtype=torch.float32)
n_samples, n_features = X.shape
print(f"Number of samples: {n_samples}, number of features: {n_features}")
model = nn.Linear(n_features, n_features)
with torch.no_grad():  # Kiln's kaiming_uniform draw for the sample's graph
    model.weight.fill_(0.598382711)
    model.bias.fill_(-0.983715296)
print(f"Prediction before training: f(5) = {model(X_test).item():.3f}")
learning_rate = 0.01
n_iters = 100
loss = nn.MSELoss()
optimizer = torch.optim.SGD(model.parameters(), lr=learning_rate)
for epoch in range(n_iters):
    y_pred = model(X)
    l = loss(Y, y_pred)
    l.backward()
    optimizer.step()
    optimizer.zero_grad()
    if epoch % 10 == 0:
        [w, b] = model.parameters()
        print(f"Epoch {epoch+1}: w = {w[0][0].item():.3f}, loss = {l:.8f}")
print(f"Prediction after training: f(5) = {model(X_test).item():.3f}")
