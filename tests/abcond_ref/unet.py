"""AlgoPerf's fastMRI U-Net (workload fastmri) and the deterministic part of its
knee-singlecoil input pipeline, written for the tests from their definition
(mlcommons/algorithmic-efficiency, algoperf/workloads/fastmri/fastmri_pytorch/
models.py class UNet, fastmri_pytorch/workload.py, fastmri/workload.py,
fastmri/input_pipeline.py and algoperf/init_utils.py pytorch_default_init),
independently of the Rust code. Facts and sources: /work/unet-notes.md.

Parameter names are AlgoPerf's state_dict keys (no buffers: InstanceNorm2d has
affine=False, track_running_stats=False). With C = num_channels and
P = num_pool_layers (AlgoPerf: C = 32, P = 4):

    down_sample_layers.{i}.conv_layers.{0,4}.weight   i = 0..P-1  3x3, no bias
    conv.conv_layers.{0,4}.weight                                 bottleneck
    up_conv.{i}.conv_layers.{0,4}.weight              i = 0..P-2
    up_conv.{P-1}.0.conv_layers.{0,4}.weight          last ConvBlock
    up_conv.{P-1}.1.weight [out, C, 1, 1] / .bias [out]   the 1x1 output conv
    up_transpose_conv.{i}.layers.0.weight [2c, c, 2, 2]   i = 0..P-1, no bias

    ConvBlock           conv3x3(pad 1, no bias) -> InstanceNorm2d(eps 1e-5, no
                        affine) -> LeakyReLU(0.2) -> Dropout2d, twice
                        (Sequential slots 0..7; params only at 0 and 4)
    TransposeConvBlock  ConvTranspose2d(2x2, stride 2, no bias) ->
                        InstanceNorm2d -> LeakyReLU(0.2)          (slots 0..2)
    down path           ConvBlock, push skip, avg_pool2d(2, 2), P times
    up path             transpose conv, reflect-pad 1 on the right / bottom
                        where the skip is one larger (odd sizes),
                        cat([upsampled, skip], dim=1), ConvBlock

    UNet(1, 1, 32, 4) has 7,756,097 parameters (UNET_PARAMS).

    model(x)                          x [B, H, W] -> [B, H, W]  (AlgoPerf's
                                      model_fn: unsqueeze(1), squeeze(1))
    per_example_l1(model, x, y)       -> [B], mean |model(x) - y| over H*W
    slice_input_target(kspace, target, mask=None) -> (input, target, mean, std)
    write_fastmri_h5 / read_fastmri_h5 / h5_examples
    run_slices(data config) -> (inputs, targets) of a `fastmri` run

Initialisation: the modules are built in AlgoPerf's order (each Conv2d /
ConvTranspose2d consumes torch's default kaiming-uniform draws as it is
built), then every conv weight, in self.modules() order (down_sample_layers,
conv, up_conv, up_transpose_conv), is redrawn by pytorch_default_init: a
truncated normal, std = sqrt(1 / fan_in) / 0.87962566103423978, cut at
+-2 std, fan_in = weight.size(1) * kh * kw (for a ConvTranspose2d weight
[in, out, 2, 2] that is out * 4, as in AlgoPerf); the one bias is set to 0.
Under the same torch seed on CPU the initial parameters are AlgoPerf's; call
.double() for a float64 model.

Dropout: AlgoPerf's current model takes dropout_rate in forward (default 0.0,
CustomDropout2d); older versions took it in the constructor (nn.Dropout2d).
Here the constructor's `dropout` is the default and forward's dropout_rate
overrides it; it acts only in training mode. The workload's default is 0.0.

Preprocessing: numpy, float64 internally (AlgoPerf's TensorFlow code works in
float32/complex64, so expect agreement to ~1e-6 relative, not bit-identity).
The random undersampling mask of AlgoPerf (tf.random.stateless_uniform) is not
reproduced bit for bit: pass a mask, build one with acceleration_mask() from
your own uniforms, or use mask=None (fully sampled). h5py is imported only by
the h5 functions; the rest needs torch and numpy."""

import math
import os

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import rng

#: Parameters of UNet(in_chans=1, out_chans=1, num_channels=32,
#: num_pool_layers=4): down 9,504 + 55,296 + 221,184 + 884,736; bottleneck
#: 3,538,944; transpose convs 524,288 + 131,072 + 32,768 + 8,192; up convs
#: 1,769,472 + 442,368 + 110,592 + 27,648; 1x1 conv 32 + 1.
UNET_PARAMS = 7_756_097

#: AlgoPerf's constants (fastmri/workload.py, input_pipeline.py).
CENTER_FRACTION = 0.08
ACCELERATION = 4.0
CROP = (320, 320)
CLIP = 6.0
LEAKY_SLOPE = 0.2
NORM_EPS = 1e-5  # nn.InstanceNorm2d's default


def param_count(in_chans=1, out_chans=1, num_channels=32, num_pool_layers=4):
    """Parameters of UNet, by formula (no model built)."""
    def block(i, o):  # two 3x3 convs, no bias
        return 9 * i * o + 9 * o * o

    n, ch = block(in_chans, num_channels), num_channels
    for _ in range(num_pool_layers - 1):
        n, ch = n + block(ch, 2 * ch), 2 * ch
    n += block(ch, 2 * ch)  # bottleneck, ch -> 2ch
    for _ in range(num_pool_layers):
        n += 4 * (2 * ch) * ch  # transpose conv 2ch -> ch
        n += block(2 * ch, ch)  # ConvBlock on the concatenation
        ch //= 2
    return n + out_chans * num_channels + out_chans  # 1x1 conv with bias


def lecun_trunc_normal_(module):
    """AlgoPerf's init_utils.pytorch_default_init: truncated-normal LeCun init
    of a conv's weight, bias (if any) to 0."""
    fan_in, _ = nn.init._calculate_fan_in_and_fan_out(module.weight)
    std = math.sqrt(1.0 / fan_in) / 0.87962566103423978
    nn.init.trunc_normal_(module.weight, std=std, a=-2 * std, b=2 * std)
    if module.bias is not None:
        nn.init.zeros_(module.bias)


class Dropout2d(nn.Module):
    """A parameter-free dropout slot (AlgoPerf's CustomDropout2d): zeroes whole
    channels with probability p, given with each call, in training mode only."""

    def forward(self, x, p=0.0):
        return F.dropout2d(x, p, training=self.training) if p else x


class ConvBlock(nn.Module):
    """[conv3x3, InstanceNorm2d, LeakyReLU(0.2), Dropout2d] x 2 as one
    Sequential `conv_layers` (the slot indices fix the parameter names)."""

    def __init__(self, c_in, c_out):
        super().__init__()
        self.conv_layers = nn.Sequential(
            nn.Conv2d(c_in, c_out, kernel_size=3, padding=1, bias=False),
            nn.InstanceNorm2d(c_out, eps=NORM_EPS, affine=False, track_running_stats=False),
            nn.LeakyReLU(LEAKY_SLOPE),
            Dropout2d(),
            nn.Conv2d(c_out, c_out, kernel_size=3, padding=1, bias=False),
            nn.InstanceNorm2d(c_out, eps=NORM_EPS, affine=False, track_running_stats=False),
            nn.LeakyReLU(LEAKY_SLOPE),
            Dropout2d(),
        )

    def forward(self, x, p=0.0):
        for m in self.conv_layers:
            x = m(x, p) if isinstance(m, Dropout2d) else m(x)
        return x


class TransposeConvBlock(nn.Module):
    """ConvTranspose2d(2x2, stride 2, no bias) -> InstanceNorm2d ->
    LeakyReLU(0.2): doubles H and W. No dropout."""

    def __init__(self, c_in, c_out):
        super().__init__()
        self.layers = nn.Sequential(
            nn.ConvTranspose2d(c_in, c_out, kernel_size=2, stride=2, bias=False),
            nn.InstanceNorm2d(c_out, eps=NORM_EPS, affine=False, track_running_stats=False),
            nn.LeakyReLU(LEAKY_SLOPE),
        )

    def forward(self, x):
        return self.layers(x)


class OutputHead(nn.Sequential):
    """up_conv.{P-1}: the last ConvBlock (slot 0) then the 1x1 conv with bias
    (slot 1), AlgoPerf's SequentialWithDropout."""

    def forward(self, x, p=0.0):
        return self[1](self[0](x, p))


class UNet(nn.Module):
    """AlgoPerf's fastMRI U-Net (use_tanh=False, use_layer_norm=False)."""

    def __init__(self, in_chans=1, out_chans=1, num_channels=32, num_pool_layers=4, dropout=0.0):
        super().__init__()
        self.in_chans, self.out_chans = in_chans, out_chans
        self.num_channels, self.num_pool_layers = num_channels, num_pool_layers
        self.dropout = 0.0 if dropout is None else float(dropout)

        self.down_sample_layers = nn.ModuleList([ConvBlock(in_chans, num_channels)])
        ch = num_channels
        for _ in range(num_pool_layers - 1):
            self.down_sample_layers.append(ConvBlock(ch, 2 * ch))
            ch *= 2
        self.conv = ConvBlock(ch, 2 * ch)

        # Registered up_conv first (it decides modules() / state_dict order),
        # built interleaved transpose, conv (it decides the default-init draws).
        self.up_conv = nn.ModuleList()
        self.up_transpose_conv = nn.ModuleList()
        for _ in range(num_pool_layers - 1):
            self.up_transpose_conv.append(TransposeConvBlock(2 * ch, ch))
            self.up_conv.append(ConvBlock(2 * ch, ch))
            ch //= 2
        self.up_transpose_conv.append(TransposeConvBlock(2 * ch, ch))
        self.up_conv.append(OutputHead(ConvBlock(2 * ch, ch), nn.Conv2d(ch, out_chans, kernel_size=1, stride=1)))

        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                lecun_trunc_normal_(m)

    def unet(self, x, dropout_rate=None):
        """The network on [B, in_chans, H, W] -> [B, out_chans, H, W]."""
        p = self.dropout if dropout_rate is None else dropout_rate
        skips, h = [], x
        for block in self.down_sample_layers:
            h = block(h, p)
            skips.append(h)
            h = F.avg_pool2d(h, kernel_size=2, stride=2, padding=0)
        h = self.conv(h, p)
        for up, block in zip(self.up_transpose_conv, self.up_conv):
            skip = skips.pop()
            h = up(h)
            pad_right = 1 if h.shape[-1] != skip.shape[-1] else 0
            pad_bottom = 1 if h.shape[-2] != skip.shape[-2] else 0
            if pad_right or pad_bottom:
                h = F.pad(h, [0, pad_right, 0, pad_bottom], mode="reflect")
            h = block(torch.cat([h, skip], dim=1), p)
        return h

    def forward(self, x, dropout_rate=None):
        """x [B, H, W] (AlgoPerf's batch['inputs']) -> [B, H, W]; a 4-D
        [B, C, H, W] input gives the 4-D output."""
        if x.dim() == 3:
            return self.unet(x.unsqueeze(1), dropout_rate).squeeze(1)
        return self.unet(x, dropout_rate)


def per_example_l1(model, x, y, dropout_rate=None):
    """AlgoPerf's per-example loss, shape [B]: F.l1_loss(out, y, 'none')
    .mean(dim=(1, 2)), the mean absolute error over the H*W pixels of each
    example (not a sum). The workload's loss_fn multiplies it by the 0/1 eval
    padding weights, sums over the batch and reports n_valid_examples; the
    training objective is that sum / n_valid (the batch mean)."""
    out = model(x, dropout_rate)
    return (out - y).abs().mean(dim=(-2, -1))


# --- input pipeline (input_pipeline.py, _process_example) -------------------


def center_mask(num_cols, center_fraction=CENTER_FRACTION):
    """The always-kept low-frequency columns: num_low = int(num_cols *
    center_fraction) (float32 product truncated) columns starting at
    pad = (num_cols - num_low + 1) // 2. float32 [num_cols] of 0/1."""
    num_low = int(np.float32(num_cols) * np.float32(center_fraction))
    pad = (num_cols - num_low + 1) // 2
    m = np.zeros(num_cols, np.float32)
    m[pad : pad + num_low] = 1.0
    return m


def acceleration_prob(num_cols, center_fraction=CENTER_FRACTION, acceleration=ACCELERATION):
    """Probability that a column outside the centre is kept:
    (num_cols / acceleration - num_low) / (num_cols - num_low)."""
    num_low = int(np.float32(num_cols) * np.float32(center_fraction))
    return (num_cols / acceleration - num_low) / (num_cols - num_low)


def acceleration_mask(uniforms, center_fraction=CENTER_FRACTION, acceleration=ACCELERATION):
    """AlgoPerf's column mask from num_cols uniforms in [0, 1) (AlgoPerf draws
    them with tf.random.stateless_uniform(seed); any source here):
    max(center_mask, uniforms < prob). float32 [num_cols]."""
    u = np.asarray(uniforms)
    n = u.shape[0]
    rand = (u < acceleration_prob(n, center_fraction, acceleration)).astype(np.float32)
    return np.maximum(center_mask(n, center_fraction), rand)


def ifft2c(kspace):
    """Centred orthonormal 2-D inverse FFT over the last two axes: fftshift(
    ifft2(ifftshift(k))) * sqrt(H * W), i.e. norm='ortho' (AlgoPerf: ifftshift,
    tf.signal.ifft2d, fftshift, times sqrt(prod(shape[-2:])))."""
    k = np.asarray(kspace, np.complex128)
    img = np.fft.ifft2(np.fft.ifftshift(k, axes=(-2, -1)), norm="ortho")
    return np.fft.fftshift(img, axes=(-2, -1))


def center_crop(x, shape=CROP):
    """The centre [h, w] window of the last two axes, starting at
    ((H - h) // 2, (W - w) // 2)."""
    h, w = shape
    r0, c0 = (x.shape[-2] - h) // 2, (x.shape[-1] - w) // 2
    return x[..., r0 : r0 + h, c0 : c0 + w]


def slice_input_target(kspace_slice, target, mask=None):
    """One example of AlgoPerf's pipeline from a fastMRI slice.

    kspace_slice  complex [H, W] (fastMRI knee: H = 640, W varies, e.g. 368)
    target        float [320, 320], the slice of reconstruction_esc
    mask          None (fully sampled) or a 0/1 column mask [W]
                  (center_mask / acceleration_mask), applied to every row

    Steps: k * mask; zero-filled image = ifft2c; centre crop to target's shape;
    complex abs; mean and std (population, ddof 0, no eps) of that image;
    input = clip((abs - mean) / std, -6, 6); target = clip((target - mean) /
    std, -6, 6) (the target is clipped too). Returns (input float32 [320,
    320], target float32 [320, 320], mean float, std float)."""
    k = np.asarray(kspace_slice, np.complex128)
    if mask is not None:
        k = k * np.asarray(mask, np.float64).reshape(1, -1)
    t = np.asarray(target, np.float64)
    img = np.abs(center_crop(ifft2c(k), t.shape))
    mean, std = float(img.mean()), float(img.std())
    x = np.clip((img - mean) / std, -CLIP, CLIP).astype(np.float32)
    y = np.clip((t - mean) / std, -CLIP, CLIP).astype(np.float32)
    return x, y, mean, std


# --- fastMRI .h5 files ------------------------------------------------------


def write_fastmri_h5(path, kspace, target, attrs=None, header=b"<?xml version=\"1.0\"?><ismrmrdHeader/>"):
    """Write a fastMRI knee-singlecoil-format volume: datasets kspace complex64
    [S, H, W], reconstruction_esc float32 [S, 320, 320], ismrmrd_header (a
    scalar bytes dataset); attrs acquisition, max, norm, patient_id (max and
    norm default to the max and the Frobenius norm of the target volume;
    AlgoPerf reads only `max`, as volume_max, default 0.0)."""
    import h5py

    kspace = np.asarray(kspace, np.complex64)
    target = np.asarray(target, np.float32)
    assert kspace.ndim == 3 and target.ndim == 3 and kspace.shape[0] == target.shape[0]
    a = {
        "acquisition": "CORPD_FBK",
        "max": float(target.max()),
        "norm": float(np.linalg.norm(target.astype(np.float64).ravel())),
        "patient_id": "synthetic",
    }
    a.update(attrs or {})
    with h5py.File(path, "w") as hf:
        hf.create_dataset("kspace", data=kspace)
        hf.create_dataset("reconstruction_esc", data=target)
        hf.create_dataset("ismrmrd_header", data=np.bytes_(header))
        for k, v in a.items():
            hf.attrs[k] = v


def read_fastmri_h5(path):
    """{'kspace': complex64 [S, H, W], 'reconstruction_esc': float32 [S, 320,
    320] (None if absent), 'ismrmrd_header': bytes (None if absent),
    'attrs': dict (str values as str)}."""
    import h5py

    with h5py.File(path, "r") as hf:
        out = {
            "kspace": np.asarray(hf["kspace"][()], np.complex64),
            "reconstruction_esc": np.asarray(hf["reconstruction_esc"][()], np.float32) if "reconstruction_esc" in hf else None,
            "ismrmrd_header": bytes(hf["ismrmrd_header"][()]) if "ismrmrd_header" in hf else None,
            "attrs": {},
        }
        for k, v in hf.attrs.items():
            if isinstance(v, bytes):
                v = v.decode()
            elif isinstance(v, np.generic):
                v = v.item()
            out["attrs"][k] = v
    return out


def h5_examples(path, mask=None):
    """AlgoPerf's examples of one volume, every slice in order: yields dicts
    inputs, targets, mean, std, volume_max (attrs['max'], default 0.0).
    `mask` is None, one column mask for all slices, or a callable
    slice_index -> mask."""
    vol = read_fastmri_h5(path)
    vmax = float(vol["attrs"].get("max", 0.0))
    for i in range(vol["kspace"].shape[0]):
        m = mask(i) if callable(mask) else mask
        x, y, mean, std = slice_input_target(vol["kspace"][i], vol["reconstruction_esc"][i], m)
        yield {"inputs": x, "targets": y, "mean": mean, "std": std, "volume_max": vmax}


#: abcond's generator stream of the k-space masks (src/util/rng.rs MRI_MASK).
MRI_MASK_STREAM = 11


def run_slices(data):
    """(inputs, targets) [N, h, w] of a `fastmri` run's slices, in file order
    (`data`: the run's data config), each slice's k-space mask drawn with
    abcond's documented generator (stream 11, the slice's number)."""
    path = data["path"]
    files = [path] if os.path.isfile(path) else sorted(
        os.path.join(path, f) for f in os.listdir(path) if f.endswith(".h5"))
    xs, ys, n = [], [], 0
    for f in files:
        vol = read_fastmri_h5(f)
        for k, t in zip(vol["kspace"], vol["reconstruction_esc"]):
            if data.get("examples") and n >= data["examples"]:
                break
            g = rng.Xoshiro(rng.derive(data.get("seed", 0), [MRI_MASK_STREAM, n]))
            u = np.array([(g.next() >> 11) * 2.0**-53 for _ in range(k.shape[1])])
            acc = data.get("acceleration", 4.0)
            mask = acceleration_mask(u, acceleration=acc) if acc > 1 else None
            x, y, _, _ = slice_input_target(k, t, mask)
            xs.append(x)
            ys.append(y)
            n += 1
    return np.stack(xs), np.stack(ys)
