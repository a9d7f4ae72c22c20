"""PyTorch reference modules of abcond's models (MLP, two-layer ReLU, half-space,
matrix factorisation, and the CIFAR CNN, ResNet9, ResNet-18/34), written
independently of the Rust code from the model definitions in the paper and the
references cited in src/model/*.rs, with stock torch.nn modules (default
initialisation). Parameter names are the state_dict names abcond uses; every
module's forward(x, y) returns the per-example losses f_i, shape [B].

build(model_cfg, shape, classes, rows, cols): the module of a resolved `model` section.
BN_POLICY: how the BatchNorm models measure, set on this module (parity.py does).
"""

import numpy as np
import torch


class MLP(torch.nn.Module):
    """Paper §5.1: Linear(d, W) → ReLU → Linear(W, W) → ReLU → Linear(W, C), cross-entropy."""

    def __init__(self, d, width, classes):
        super().__init__()
        self.fc1 = torch.nn.Linear(d, width)
        self.fc2 = torch.nn.Linear(width, width)
        self.fc3 = torch.nn.Linear(width, classes)

    def forward(self, x, y):
        h = torch.relu(self.fc1(x.flatten(1)))
        h = torch.relu(self.fc2(h))
        return torch.nn.functional.cross_entropy(self.fc3(h), y, reduction="none")


class TwoLayer(torch.nn.Module):
    """Paper Example 5: log(1 + exp(−y v·relu(W x))), y in {−1, +1}."""

    def __init__(self, d, width):
        super().__init__()
        self.hidden = torch.nn.Linear(d, width, bias=False)
        self.output = torch.nn.Linear(width, 1, bias=False)

    def forward(self, x, y):
        out = self.output(torch.relu(self.hidden(x.flatten(1)))).squeeze(1)
        b = 2.0 * y.to(out.dtype) - 1.0
        return torch.nn.functional.softplus(-b * out)


class Halfspace(torch.nn.Module):
    """sigmoid(−b x·a) + (λ/2)||x||²."""

    def __init__(self, d, lam, init_std):
        super().__init__()
        self.lam = lam
        self.weight = torch.nn.Parameter(torch.randn(d) * init_std)

    def forward(self, a, y):
        b = 2.0 * y.to(self.weight.dtype) - 1.0
        return torch.sigmoid(-b * (a @ self.weight)) + self.lam / 2 * (self.weight**2).sum()


class MatrixFactorisation(torch.nn.Module):
    """½ (X_ij − w_i·s_j)² with W = row_factors (k × n), S = col_factors (k × m)."""

    def __init__(self, rows, cols, rank, init_std):
        super().__init__()
        self.row_factors = torch.nn.Parameter(torch.randn(rank, rows) * init_std)
        self.col_factors = torch.nn.Parameter(torch.randn(rank, cols) * init_std)

    def forward(self, ij, target):
        w = self.row_factors[:, ij[:, 0]]
        s = self.col_factors[:, ij[:, 1]]
        return 0.5 * (target - (w * s).sum(0)) ** 2


# --- CIFAR vision models (branch cifar) ---
# Written from the layouts in the paper and the references cited in src/model/*.rs,
# with stock torch.nn modules (default initialisation). Parameter names are the
# state_dict names abcond uses.
BN_POLICY = "batch-stats"  # how BatchNorm measures: "train", "batch-stats", "running-stats"


class CNN(torch.nn.Module):
    """Paper §5.2: conv(C→32, 5×5) → maxpool 2 → ReLU → conv(32→W, 5×5) → maxpool 2 → ReLU → Linear."""

    def __init__(self, shape, width, classes):
        super().__init__()
        c, h, w = shape
        side = lambda s: ((s - 4) // 2 - 4) // 2  # noqa: E731
        self.conv1 = torch.nn.Conv2d(c, 32, 5)
        self.conv2 = torch.nn.Conv2d(32, width, 5)
        self.fc = torch.nn.Linear(width * side(h) * side(w), classes)

    def forward(self, x, y):
        h = torch.relu(torch.nn.functional.max_pool2d(self.conv1(x), 2))
        h = torch.relu(torch.nn.functional.max_pool2d(self.conv2(h), 2))
        return torch.nn.functional.cross_entropy(self.fc(h.flatten(1)), y, reduction="none")


def conv_block(c_in, c_out, pool=False):
    layers = [torch.nn.Conv2d(c_in, c_out, 3, padding=1), torch.nn.BatchNorm2d(c_out), torch.nn.ReLU()]
    if pool:
        layers.append(torch.nn.MaxPool2d(2))
    return torch.nn.Sequential(*layers)


class ResNet9(torch.nn.Module):
    """The 'ResNet9 on CIFAR-100' notebook's model (Myrtle/DAWNBench layout), no dropout."""

    def __init__(self, c, classes):
        super().__init__()
        self.conv1 = conv_block(c, 64)
        self.conv2 = conv_block(64, 128, pool=True)
        self.res1 = torch.nn.Sequential(conv_block(128, 128), conv_block(128, 128))
        self.conv3 = conv_block(128, 256, pool=True)
        self.conv4 = conv_block(256, 512, pool=True)
        self.res2 = torch.nn.Sequential(conv_block(512, 512), conv_block(512, 512))
        self.classifier = torch.nn.Sequential(torch.nn.AdaptiveMaxPool2d(1), torch.nn.Flatten(), torch.nn.Linear(512, classes))

    def forward(self, x, y):
        with bn_policy(self):
            out = self.conv2(self.conv1(x))
            out = self.res1(out) + out
            out = self.conv4(self.conv3(out))
            out = self.res2(out) + out
            return torch.nn.functional.cross_entropy(self.classifier(out), y, reduction="none")


class BasicBlock(torch.nn.Module):
    def __init__(self, c_in, c_out, stride):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = torch.nn.BatchNorm2d(c_out)
        self.conv2 = torch.nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = torch.nn.BatchNorm2d(c_out)
        self.downsample = None
        if stride != 1 or c_in != c_out:
            self.downsample = torch.nn.Sequential(torch.nn.Conv2d(c_in, c_out, 1, stride, bias=False), torch.nn.BatchNorm2d(c_out))

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + (x if self.downsample is None else self.downsample(x)))


class ResNetCifar(torch.nn.Module):
    """torchvision-named ResNet with a 3×3 stride-1 stem and no max-pool (CIFAR form)."""

    def __init__(self, layers, c, classes):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(c, 64, 3, 1, 1, bias=False)
        self.bn1 = torch.nn.BatchNorm2d(64)
        c_in = 64
        for i, n in enumerate(layers):
            blocks = []
            for b in range(n):
                blocks.append(BasicBlock(c_in, 64 << i, 2 if i > 0 and b == 0 else 1))
                c_in = 64 << i
            setattr(self, f"layer{i + 1}", torch.nn.Sequential(*blocks))
        self.fc = torch.nn.Linear(512, classes)

    def forward(self, x, y):
        with bn_policy(self):
            h = torch.relu(self.bn1(self.conv1(x)))
            h = self.layer4(self.layer3(self.layer2(self.layer1(h))))
            h = torch.nn.functional.adaptive_avg_pool2d(h, 1).flatten(1)
            return torch.nn.functional.cross_entropy(self.fc(h), y, reduction="none")


class MLPLogits(MLP):
    """MLP returning the logits (for abcond.export, with the loss as a module)."""

    def forward(self, x):
        h = torch.relu(self.fc1(x.flatten(1)))
        return self.fc3(torch.relu(self.fc2(h)))


class ResNetCifarLogits(ResNetCifar):
    """ResNetCifar returning the logits, BatchNorm as the module's mode says
    (scriptable: no bn_policy)."""

    def forward(self, x):
        h = torch.relu(self.bn1(self.conv1(x)))
        h = self.layer4(self.layer3(self.layer2(self.layer1(h))))
        return self.fc(torch.nn.functional.adaptive_avg_pool2d(h, 1).flatten(1))


class bn_policy:
    """Sets the BatchNorm layers of `model` per BN_POLICY for one forward pass:
    "train": train() (batch stats, running stats updated); "batch-stats": batch
    stats with the running stats left as they are; "running-stats": eval()."""

    def __init__(self, model):
        self.bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]

    def __enter__(self):
        self.saved = [(m.training, m.momentum) for m in self.bns]
        for m in self.bns:
            m.train(BN_POLICY != "running-stats")
            if BN_POLICY == "batch-stats":
                m.momentum = 0.0  # running ← 1·running + 0·batch: unchanged

    def __exit__(self, *exc):
        for m, (t, mom) in zip(self.bns, self.saved):
            m.train(t)
            m.momentum = mom


def build(m, shape, classes, rows=None, cols=None):
    """The reference module of a resolved `model` section, for inputs of `shape`
    (one example's) and `classes` classes (rows × cols for matrix-factorisation),
    in the current default dtype."""
    d = int(np.prod(shape))
    if m["kind"] == "mlp":
        return MLP(d, m["width"], classes)
    if m["kind"] == "two-layer-relu":
        return TwoLayer(d, m["width"])
    if m["kind"] == "cnn":
        return CNN(tuple(shape), m["width"], classes)
    if m["kind"] == "resnet9":
        return ResNet9(shape[0], classes)
    if m["kind"] in ("resnet18", "resnet34"):
        layers = [2, 2, 2, 2] if m["kind"] == "resnet18" else [3, 4, 6, 3]
        return ResNetCifar(layers, shape[0], classes)
    if m["kind"] == "halfspace":
        return Halfspace(d, m["lambda"], m["init_std"])
    if m["kind"] == "matrix-factorisation":
        return MatrixFactorisation(rows, cols, m["rank"], m["init_std"])
    raise ValueError(m["kind"])
