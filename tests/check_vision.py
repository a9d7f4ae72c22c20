#!/usr/bin/env python3
"""Parameter and buffer names/shapes of the PyTorch reference vision models
(tests/abcond_ref/models.py), one line each ("MODEL param|buffer NAME SHAPE", shape
as d1xd2x…, and "MODEL num_params N"), for tests/vision.rs to compare with abcond's.

usage: check_vision.py CLASSES
"""

import sys

from abcond_ref import models as T

classes = int(sys.argv[1])
models = {
    "cnn-64": T.CNN((3, 32, 32), 64, classes),
    "resnet9": T.ResNet9(3, classes),
    "resnet18": T.ResNetCifar([2, 2, 2, 2], 3, classes),
    "resnet34": T.ResNetCifar([3, 4, 6, 3], 3, classes),
}
for name, m in models.items():
    print(name, "num_params", sum(p.numel() for p in m.parameters()))
    for n, p in m.named_parameters():
        print(name, "param", n, "x".join(map(str, p.shape)))
    for n, b in m.named_buffers():
        if not n.endswith("num_batches_tracked"):
            print(name, "buffer", n, "x".join(map(str, b.shape)))
