"""PyTorch reference modules of abcond's ImageNet models, written from the AlgoPerf
definitions (mlcommons/algorithmic-efficiency, workloads imagenet_resnet and
imagenet_vit) independently of the Rust code; parameter names are the snapshot keys.

    ResNet50(width, classes)   torchvision layout, downsample.0 / downsample.1
    ViT(classes, width, depth, heads, mlp_dim, patch)
    model(x, y) -> per-example cross-entropy [B]
"""

import math

import torch
import torch.nn.functional as F
from torch import nn


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, c_in, planes, stride):
        super().__init__()
        c_out = planes * self.expansion
        self.conv1 = nn.Conv2d(c_in, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, c_out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(c_out)
        self.downsample = None
        if stride != 1 or c_in != c_out:
            self.downsample = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x):
        h = F.relu(self.bn1(self.conv1(x)))
        h = F.relu(self.bn2(self.conv2(h)))
        h = self.bn3(self.conv3(h))
        return F.relu(h + (x if self.downsample is None else self.downsample(x)))


class ResNet50(nn.Module):
    def __init__(self, width=64, classes=1000):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        c_in = width
        for i, n in enumerate([3, 4, 6, 3]):
            blocks = []
            for j in range(n):
                blocks.append(Bottleneck(c_in, width * 2**i, 2 if i > 0 and j == 0 else 1))
                c_in = width * 2**i * 4
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        self.fc = nn.Linear(c_in, classes)

    def logits(self, x):
        h = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, 2, 1)
        for i in range(1, 5):
            h = getattr(self, f"layer{i}")(h)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(h, 1), 1))

    def forward(self, x, y):
        return F.cross_entropy(self.logits(x), y, reduction="none")


def posemb_sincos_2d(h, w, width, dtype):
    """MoCo v3 layout as AlgoPerf: [sin x, cos x, sin y, cos y]."""
    y, x = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    omega = torch.arange(width // 4, dtype=torch.float64) / (width // 4 - 1)
    omega = 1.0 / (10_000.0**omega)
    y = y.flatten()[:, None].double() * omega[None, :]
    x = x.flatten()[:, None].double() * omega[None, :]
    return torch.cat((x.sin(), x.cos(), y.sin(), y.cos()), dim=1)[None].to(dtype)


class SelfAttention(nn.Module):
    def __init__(self, width, heads):
        super().__init__()
        self.heads = heads
        self.query = nn.Linear(width, width)
        self.key = nn.Linear(width, width)
        self.value = nn.Linear(width, width)
        self.out = nn.Linear(width, width)

    def forward(self, x):
        n, t, d = x.shape
        hd = d // self.heads

        def split(u):
            return u.view(n, t, self.heads, hd).permute(0, 2, 1, 3)

        q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
        probs = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(hd), dim=-1)
        return self.out((probs @ v).permute(0, 2, 1, 3).reshape(n, t, d))


class Mlp(nn.Module):
    def __init__(self, width, mlp_dim):
        super().__init__()
        self.linear1 = nn.Linear(width, mlp_dim)
        self.linear2 = nn.Linear(mlp_dim, width)

    def forward(self, x):
        return self.linear2(F.gelu(self.linear1(x), approximate="tanh"))


class Block(nn.Module):
    def __init__(self, width, heads, mlp_dim):
        super().__init__()
        self.layer_norm0 = nn.LayerNorm(width, eps=1e-6)
        self.self_attention1 = SelfAttention(width, heads)
        self.layer_norm2 = nn.LayerNorm(width, eps=1e-6)
        self.mlp3 = Mlp(width, mlp_dim)

    def forward(self, x):
        x = x + self.self_attention1(self.layer_norm0(x))
        return x + self.mlp3(self.layer_norm2(x))


class Encoder(nn.Module):
    def __init__(self, width, depth, heads, mlp_dim):
        super().__init__()
        self.net = nn.ModuleList([Block(width, heads, mlp_dim) for _ in range(depth)])
        self.encoder_norm = nn.LayerNorm(width, eps=1e-6)

    def forward(self, x):
        for b in self.net:
            x = b(x)
        return self.encoder_norm(x)


class ViT(nn.Module):
    def __init__(self, classes=1000, width=384, depth=12, heads=6, mlp_dim=1536, patch=16):
        super().__init__()
        self.width = width
        self.conv_patch_extract = nn.Conv2d(3, width, patch, stride=patch)
        self.encoder = Encoder(width, depth, heads, mlp_dim)
        self.pre_logits = nn.Linear(width, width)
        self.head = nn.Linear(width, classes)

    def logits(self, x):
        h = self.conv_patch_extract(x)
        n, c, gh, gw = h.shape
        h = h.reshape(n, c, gh * gw).transpose(1, 2) + posemb_sincos_2d(gh, gw, c, h.dtype)
        h = self.encoder(h).mean(dim=1)
        return self.head(torch.tanh(self.pre_logits(h)))

    def forward(self, x, y):
        return F.cross_entropy(self.logits(x), y, reduction="none")


def build(model_cfg, classes):
    """The reference module of a resolved `model` section."""
    m = model_cfg
    if m["kind"] == "resnet50":
        return ResNet50(m["width"], classes)
    if m["kind"] == "vit":
        return ViT(classes, m["width"], m["depth"], m["heads"], m["mlp_dim"], m["patch_size"])
    raise ValueError(m["kind"])


def num_params(model):
    return sum(p.numel() for p in model.parameters())
