"""``abcond.Logger``: record your own PyTorch training loop as an abcond run.

A few lines in the loop write, in exactly the format ``abcond train``
writes, a run directory that ``abcond probe`` and ``abcond analyze`` take
unchanged: one row per step in steps.parquet (step, epoch, lr, loss,
grad_norm and the example indices of the minibatch), the iterates x^k of the
snapshot schedule and the final x^K under ``iterates/``, data.parquet, and
run.yaml with status, provenance and the config.

::

    log = abcond.Logger("results/my-exp/seed0", config, model, optimizer)
    for epoch in range(epochs):
        for idx in torch.randperm(n).split(batch_size):   # the example indices
            loss = loss_fn(model(x[idx]), y[idx]).mean()
            optimizer.zero_grad()
            loss.backward()
            log.step(loss, idx)        # after backward(), before optimizer.step()
            optimizer.step()
    log.finish()                       # writes x^K; status completed

Every file is written atomically (temporary, fsync, rename), and run.yaml
says ``completed`` only after the last one is durable: a loop killed at any
point leaves a run that ``abcond probe`` refuses with a clear message, never
one with a torn snapshot.
"""

import fcntl
import json
import math
import os
import platform
import shutil
import socket
import sys
import time
import zipfile

import numpy as np
import yaml

from . import store

NAME = "abcond.Logger"
MANIFEST_FORMAT = "abcond.run/2"
PROTOCOL = "abcond.torchscript/1"
#: Limits the binary applies (src/config/validate.rs).
MAX_SNAPSHOTS = 100_000
MAX_STEPS = 10_000_000_000

_SECTIONS = ("experiment", "seed", "device", "model", "data", "train", "snapshots", "probe", "analysis")
_MODEL_KEYS = ("kind", "path", "dtype")
_DATA_KEYS = ("dataset", "path", "inputs")
_TRAIN_KEYS = ("batch_size", "steps", "epochs")
_SNAPSHOT_KEYS = ("every", "log_spaced", "at")
#: What abcond's own run directories hold (and nothing else is removed by
#: ``replace=True``).
_RUN_ENTRIES = (
    "run.yaml",
    "data.parquet",
    "vocab.parquet",
    "steps.parquet",
    "steps-parts",
    "iterates",
    "state",
    "probe-parts",
    "replay-parts",
    "landscape.parquet",
    "curvature-parts",
    "curvature.parquet",
    "cloud.parquet",
    "analysis",
    ".analysis.lock",
)


def _now():
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _safe_name(name, what):
    if not name or name.startswith(".") or not all(c.isascii() and (c.isalnum() or c in "-_.") for c in name):
        raise ValueError(f"{what} must be a directory-safe name (letters, digits, '-', '_', '.'), got {name!r}")
    return name


def _whole(v, key, least=0):
    if isinstance(v, bool) or not isinstance(v, int) or v < least:
        raise ValueError(f"key `{key}` must be a whole number ≥ {least}, got {v!r}")
    return v


def snapshot_steps(snapshots, total):
    """The steps whose iterate is written, as ``abcond train`` computes them:
    the union of ``every``, ``log_spaced`` (about that many steps log-spaced
    over [1, K], plus 0) and ``at``, always with K; ``log_spaced: 30`` when
    none is given."""
    every, logn, at = snapshots.get("every"), snapshots.get("log_spaced"), snapshots.get("at") or []
    if every is None and logn is None and not at:
        logn = 30
    s = set()
    if every is not None:
        _whole(every, "snapshots.every", 1)
        n = total // every + 1
        if n > MAX_SNAPSHOTS:
            raise ValueError(f"key `snapshots.every` ({every}) gives {n} snapshots over {total} steps, more than abcond's limit of {MAX_SNAPSHOTS}: raise it")
        s.update(range(0, total + 1, every))
    if logn is not None:
        _whole(logn, "snapshots.log_spaced")
        s.add(0)
        if logn >= 2 and total >= 1:
            top = math.log(total)
            for i in range(logn):
                # Rust's f64::round: half away from zero (the values are positive).
                v = math.floor(math.exp(top * i / (logn - 1)) + 0.5)
                s.add(min(max(v, 1), total))
        else:
            s.add(total)
    for k in at:
        _whole(k, "snapshots.at")
        if k > total:
            raise ValueError(f"key `snapshots.at` lists step {k}, but training has only {total} steps")
        s.add(k)
    s.add(total)
    return sorted(s)


def _digest(path):
    import xxhash

    h = xxhash.xxh64(seed=0)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return f"xxh64:{h.intdigest():016x}"


def _examples(path, inputs):
    """The number of examples (the common first dimension) of a tensors file,
    read from its header."""
    ext = os.path.splitext(path)[1].lower()
    shapes = {}
    if ext == ".safetensors":
        with open(path, "rb") as f:
            raw = f.read(8)
            if len(raw) < 8:
                raise ValueError(f"{path}: not a safetensors file (shorter than its 8-byte header length)")
            n = int.from_bytes(raw, "little")
            if n > 100 << 20:
                raise ValueError(f"{path}: not a safetensors file (header length {n})")
            header = json.loads(f.read(n))
        shapes = {k: v["shape"] for k, v in header.items() if k != "__metadata__"}
    elif ext == ".npz":
        with zipfile.ZipFile(path) as z:
            for name in z.namelist():
                if name.endswith(".npy"):
                    with z.open(name) as f:
                        version = np.lib.format.read_magic(f)
                        shapes[name[:-4]] = list(np.lib.format._read_array_header(f, version)[0])
    elif ext == ".npy":
        shapes = {os.path.splitext(os.path.basename(path))[0]: list(np.load(path, mmap_mode="r").shape)}
    else:
        raise ValueError(f"{path}: data.dataset tensors reads .safetensors, .npz or .npy files")
    if inputs:
        missing = [n for n in inputs if n not in shapes]
        if missing:
            raise ValueError(f"{path}: key `data.inputs` names {missing}, which the file does not hold (it has {sorted(shapes)})")
        shapes = {n: shapes[n] for n in inputs}
    firsts = {n: (s[0] if s else None) for n, s in shapes.items()}
    if not firsts or None in firsts.values() or len(set(firsts.values())) != 1:
        raise ValueError(f"{path}: the tensors must share their first dimension (the examples); their shapes are {shapes}")
    return int(next(iter(firsts.values())))


def _foreign_analysis_files(adir):
    """Files in a run's analysis/ that its .manifest does not list (a user's
    own files, which abcond keeps)."""
    if not os.path.isdir(adir):
        return []
    ours = {".manifest"}
    try:
        with open(os.path.join(adir, ".manifest")) as f:
            ours.update(yaml.safe_load(f).get("files") or [])
    except (OSError, AttributeError, yaml.YAMLError):
        pass
    return sorted(e for e in os.listdir(adir) if e not in ours and not e.startswith(".tmp-"))


def _describe_optimizer(opt):
    """(optim section, description, SGD?) of a torch optimiser: abcond's name
    and hyper-parameters where abcond has the same method, else ``external``."""
    import torch

    groups = opt.param_groups
    g = groups[0]
    lr = float(g["lr"])
    keys = {k for k in g if k != "params"}
    same = all({k: v for k, v in h.items() if k != "params"} == {k: v for k, v in g.items() if k != "params"} for h in groups)
    desc = f"{type(opt).__module__}.{type(opt).__qualname__}(" + ", ".join(f"{k}={g[k]!r}" for k in sorted(keys) if k not in ("foreach", "fused", "differentiable", "capturable")) + ")"
    if len(groups) > 1:
        desc += f" with {len(groups)} parameter groups"
    plain = same and not g.get("maximize", False)
    kind = type(opt)
    if plain and kind is torch.optim.SGD:
        return {"name": "sgd", "lr": lr, "momentum": float(g["momentum"]), "dampening": float(g["dampening"]), "nesterov": bool(g["nesterov"]), "weight_decay": float(g["weight_decay"])}, desc, True
    if plain and kind in (torch.optim.Adam, torch.optim.AdamW) and not g.get("amsgrad", False):
        # torch's Adam with decoupled_weight_decay=True is AdamW.
        name = "adamw" if kind is torch.optim.AdamW or g.get("decoupled_weight_decay", False) else "adam"
        return {"name": name, "lr": lr, "betas": [float(b) for b in g["betas"]], "eps": float(g["eps"]), "weight_decay": float(g["weight_decay"])}, desc, False
    return {"name": "external", "lr": lr}, desc, False


class Logger:
    """Records a PyTorch training loop as an abcond run in ``run_dir``.

    ``config``: a dict, or the path of a YAML file, in abcond's config schema
    restricted to what a loop outside abcond can be described by:
    ``experiment``; ``seed`` (seeds the probe's extra minibatches); ``device``;
    ``model: {kind: torchscript, path, dtype}`` (the module ``abcond.export``
    wrote of this model); ``data: {dataset: tensors, path, inputs}`` (the file
    ``abcond.save_tensors`` wrote; the indices you log index its examples);
    ``train: {batch_size, steps | epochs}`` (epochs × ⌊n / batch_size⌋ steps,
    as abcond counts them); ``snapshots``, ``probe``, ``analysis`` as in any
    abcond config. ``optim`` and ``schedule`` are recorded from ``optimizer``
    and the learning rates of the steps. Relative paths are taken from the
    YAML file's directory (from the working directory for a dict).

    ``model``: the ``nn.Module`` being trained; its ``state_dict()`` names must
    be those of the exported module. ``optimizer``: the torch optimiser the
    loop steps with (the Logger checks, by a hook, that each
    ``optimizer.step()`` comes after the ``step()`` of its step).

    ``run_dir`` must be new, empty, or (with ``replace=True``) a run an
    earlier Logger wrote, which is then started afresh. Its name is the run id.
    """

    def __init__(self, run_dir, config, model, optimizer, replace=False):
        import torch

        self._torch = torch
        self.run_dir = os.path.abspath(run_dir)
        self.run_id = _safe_name(os.path.basename(self.run_dir.rstrip(os.sep)), "the run directory's name (the run id)")
        self.model = model
        self.optimizer = optimizer
        self.config, self._source = self._read_config(config)
        cfg = self.config
        self.experiment = cfg["experiment"]
        self.examples = _examples(cfg["data"]["path"], cfg["data"].get("inputs"))
        bs = cfg["train"]["batch_size"]
        if bs > self.examples:
            raise ValueError(f"{self._source}: key `train.batch_size` is {bs} but the data set has only {self.examples} examples")
        self.steps_per_epoch = self.examples // bs
        if "steps" in cfg["train"]:
            self.total = cfg["train"]["steps"]
        else:
            self.total = cfg["train"]["epochs"] * self.steps_per_epoch
        if not 1 <= self.total <= MAX_STEPS:
            raise ValueError(f"{self._source}: training has {self.total} steps; expected 1 to {MAX_STEPS}")
        self.schedule = snapshot_steps(cfg.get("snapshots") or {}, self.total)
        self._snapshot_set = set(self.schedule)
        self._params = [(n, p) for n, p in model.named_parameters()]
        self._buffers = [(n, b) for n, b in model.named_buffers()]
        self.dtype = self._check_dtype()
        self._check_module()
        self.optim, self._optimizer_desc, self._sgd = _describe_optimizer(optimizer)
        self.k = 0
        self.rows = []
        self._flushed = 0
        self._written = []
        self._updated = True  # x^k is the current weights (no step logged yet)
        self._finished = False
        self._lock_fd = None
        self._prepare_dir(replace)
        self._hook = optimizer.register_step_pre_hook(self._before_update)
        self._t0 = time.monotonic()
        self._session = {
            "command": " ".join([os.path.basename(sys.executable)] + sys.argv),
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "device": self._device_name(),
            "torch_version": str(torch.__version__),
            "started": _now(),
            "start_step": 0,
        }
        self._created = _now()
        try:
            # run.yaml first: whatever else the directory gets is then a
            # logged run's, which replace=True may remove.
            self._write_manifest("running")
            store.write_data_table(os.path.join(self.run_dir, "data.parquet"), self.examples, cfg["data"]["path"])
        except BaseException:
            self._hook.remove()
            self._unlock()
            raise

    # --- setup ---

    def _read_config(self, config):
        if isinstance(config, (str, os.PathLike)):
            source = f"config {os.fspath(config)}"
            with open(config) as f:
                cfg = yaml.safe_load(f)
            base = os.path.dirname(os.path.abspath(config))
        else:
            source, cfg, base = "the Logger's config", config, os.getcwd()
        if not isinstance(cfg, dict):
            raise ValueError(f"{source}: expected a mapping of settings (experiment, seed, model, data, train, …)")
        cfg = json.loads(json.dumps(cfg))  # a plain copy
        for k in cfg:
            if k in ("optim", "schedule"):
                raise ValueError(f"{source}: key `{k}` is recorded from the optimiser and the logged learning rates; leave it out")
            if k == "sweep":
                raise ValueError(f"{source}: key `sweep`: a Logger records one run; loop over the settings in your script, one run directory each")
            if k not in _SECTIONS:
                raise ValueError(f"{source}: unknown key `{k}`; a Logger's config has {', '.join(_SECTIONS)}")
        if "experiment" not in cfg:
            raise ValueError(f"{source}: key `experiment` is missing (it names the run's experiment)")
        _safe_name(cfg["experiment"], f"{source}: key `experiment`")
        cfg["seed"] = _whole(cfg.get("seed", 0), "seed")
        cfg.setdefault("device", "auto")

        def section(name, keys, required):
            s = cfg.get(name)
            if not isinstance(s, dict):
                raise ValueError(f"{source}: key `{name}` must be a mapping with {', '.join(required)}")
            for k in s:
                if k not in keys:
                    raise ValueError(f"{source}: key `{name}.{k}` does not apply to a run logged from a PyTorch loop; `{name}` takes {', '.join(keys)}")
            for k in required:
                if k not in s:
                    raise ValueError(f"{source}: key `{name}.{k}` is missing")
            return s

        m = section("model", _MODEL_KEYS, ("kind", "path"))
        d = section("data", _DATA_KEYS, ("dataset", "path"))
        t = section("train", _TRAIN_KEYS, ("batch_size",))
        if m["kind"] != "torchscript":
            raise ValueError(f"{source}: key `model.kind` must be torchscript (the module abcond.export writes of your model), got {m['kind']!r}")
        if d["dataset"] != "tensors":
            raise ValueError(f"{source}: key `data.dataset` must be tensors (the file abcond.save_tensors writes), got {d['dataset']!r}")
        for s, what in ((m, "model.path"), (d, "data.path")):
            p = os.path.join(base, os.path.expanduser(str(s["path"])))
            if not os.path.isfile(p):
                raise FileNotFoundError(f"{source}: key `{what}`: {p} is not a file")
            s["path"] = os.path.abspath(p)
            s["digest"] = _digest(s["path"])
        if "inputs" in d and not (isinstance(d["inputs"], list) and all(isinstance(n, str) for n in d["inputs"])):
            raise ValueError(f"{source}: key `data.inputs` must be a list of tensor names")
        _whole(t["batch_size"], "train.batch_size", 1)
        if ("steps" in t) == ("epochs" in t):
            raise ValueError(f"{source}: key `train`: give one of `steps` and `epochs`")
        for k in ("steps", "epochs"):
            if k in t:
                _whole(t[k], f"train.{k}", 1)
        snaps = cfg.get("snapshots") or {}
        if not isinstance(snaps, dict) or any(k not in _SNAPSHOT_KEYS for k in snaps):
            raise ValueError(f"{source}: key `snapshots` takes {', '.join(_SNAPSHOT_KEYS)}")
        for k in ("probe", "analysis"):
            if k in cfg and not isinstance(cfg[k], dict):
                raise ValueError(f"{source}: key `{k}` must be a mapping")
        return cfg, source

    def _check_dtype(self):
        torch = self._torch
        kinds = {p.dtype for _, p in self._params}
        names = {torch.float32: "f32", torch.float64: "f64"}
        if len(kinds) != 1 or next(iter(kinds)) not in names:
            raise ValueError(f"the model's parameters have dtypes {sorted(map(str, kinds))}; abcond measures float32 or float64 models (one dtype)")
        dtype = names[next(iter(kinds))]
        want = self.config["model"].setdefault("dtype", dtype)
        if want != dtype:
            raise ValueError(f"{self._source}: key `model.dtype` is {want} but the model's parameters are {dtype}")
        return dtype

    def _check_module(self):
        """The exported module must hold tensors of the same names and shapes
        as this model: the probe loads the snapshots into it."""
        torch = self._torch
        path = self.config["model"]["path"]
        try:
            module = torch.jit.load(path, map_location="cpu")
            info = dict(module.abcond_info())
        except Exception as e:
            raise ValueError(f"{path}: not a module abcond.export wrote ({e.__class__.__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None
        if info.get("protocol") != PROTOCOL:
            raise ValueError(f"{path}: protocol {info.get('protocol')!r}, expected {PROTOCOL!r}")
        prefix = info.get("prefix", "")
        strip = lambda n: n[len(prefix):] if n.startswith(prefix) else n  # noqa: E731
        theirs = {strip(n): tuple(p.shape) for n, p in module.named_parameters()}
        declared = [b for b in info.get("buffers", "").split(",") if b]
        theirs.update({strip(n): tuple(b.shape) for n, b in zip(declared, module.abcond_buffers())})
        mine = {n: tuple(t.shape) for n, t in self._params + self._buffers}
        if theirs != mine:
            missing = sorted(set(theirs) - set(mine))
            extra = sorted(set(mine) - set(theirs))
            shapes = sorted(n for n in set(mine) & set(theirs) if mine[n] != theirs[n])
            raise ValueError(
                f"{path} does not hold this model's tensors (export this model with abcond.export): "
                f"only in the module {missing[:5]}, only in the model {extra[:5]}, other shapes {shapes[:5]}"
            )

    def _device_name(self):
        dev = self._params[0][1].device
        return str(dev) if dev.type != "cuda" else f"cuda:{dev.index or 0}"

    def _prepare_dir(self, replace):
        d = self.run_dir
        if os.path.lexists(d) and not os.path.isdir(d):
            raise FileExistsError(f"{d} exists and is not a directory")
        # Looked at before the lock is taken: the Logger creates no file (not
        # even .lock) in a directory that is not its own.
        self._check_existing(replace)
        os.makedirs(d, exist_ok=True)
        self._lock()
        try:
            entries = self._check_existing(replace)
            if not entries:
                return
            # run.yaml first: a replace killed half-way leaves no manifest
            # that claims files which are gone.
            os.unlink(os.path.join(d, "run.yaml"))
            for e in entries:
                p = os.path.join(d, e)
                if e == "run.yaml":
                    continue
                if os.path.isdir(p) and not os.path.islink(p):
                    shutil.rmtree(p)
                else:
                    os.unlink(p)
        except BaseException:
            self._unlock()
            raise

    def _check_existing(self, replace):
        """The entries of the run directory (none for a new or empty one),
        which may be replaced; raises when they must not be."""
        d = self.run_dir
        if not os.path.isdir(d):
            return []
        entries = [e for e in os.listdir(d) if e != ".lock"]
        if not entries:
            return []
        manifest = os.path.join(d, "run.yaml")
        if not os.path.isfile(manifest):
            raise FileExistsError(f"{d} is not empty and not an abcond run directory: choose a new or empty directory")
        try:
            with open(manifest) as f:
                old = yaml.safe_load(f)
        except Exception as e:
            raise FileExistsError(f"{manifest} is unreadable ({e}); the Logger will not write over it: choose another directory") from None
        logged = isinstance(old, dict) and isinstance(old.get("trainer"), dict) and old["trainer"].get("name") == NAME
        status = old.get("status") if isinstance(old, dict) else None
        if not logged:
            raise FileExistsError(f"{d} holds a run abcond trained (status {status}); the Logger never writes over it: choose another directory")
        if not replace:
            raise FileExistsError(f"{d} already holds a logged run (status {status}); pass replace=True to start it afresh, or choose another directory")
        foreign = [e for e in entries if e not in _RUN_ENTRIES and not e.startswith((store.TMP_PREFIX, ".analysis."))]
        foreign += [f"analysis/{e}" for e in _foreign_analysis_files(os.path.join(d, "analysis"))]
        if foreign:
            raise FileExistsError(f"{d} holds files abcond did not write ({', '.join(sorted(foreign)[:5])}); the Logger will not replace the run: move them or choose another directory")
        return entries

    def _lock(self):
        path = os.path.join(self.run_dir, ".lock")
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 4096).decode(errors="replace").strip().replace("\n", "; ")
            os.close(fd)
            raise RuntimeError(f"{self.run_dir} is locked by another process ({holder}); wait for it to finish, or choose another directory") from None
        except OSError:
            os.close(fd)  # the filesystem cannot lock: write unlocked, as abcond does
            return
        os.ftruncate(fd, 0)
        text = yaml.safe_dump(
            {"what": "log", "host": socket.gethostname(), "pid": os.getpid(), "command": " ".join(sys.argv), "since": _now()},
            sort_keys=False,
        )
        os.pwrite(fd, text.encode(), 0)
        self._lock_fd = fd

    def _unlock(self):
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing drops the flock
            self._lock_fd = None

    # --- the loop ---

    def _before_update(self, optimizer, args, kwargs):
        if self._finished:
            raise RuntimeError("abcond.Logger: optimizer.step() after finish(): the run is complete")
        if self._updated:
            raise RuntimeError(
                f"abcond.Logger: optimizer.step() for step {self.k} came before log.step(loss, indices): "
                "call log.step after loss.backward() and before optimizer.step(), so that the snapshot is x^k and the gradient norm is that of ∇f_i(x^k)"
            )
        self._updated = True

    def step(self, loss, indices, epoch=None):
        """Records step k: call it after ``loss.backward()`` and before
        ``optimizer.step()``. ``loss`` is f_{i_k}(x^k), the minibatch loss
        (a tensor or a number); ``indices`` the example indices of the
        minibatch in the data file (a tensor, array or list). Writes the
        snapshot x^k when k is a snapshot step."""
        torch = self._torch
        if self._finished:
            raise RuntimeError("abcond.Logger: step() after finish()")
        k = self.k
        if not self._updated:
            raise RuntimeError(f"abcond.Logger: step() twice for step {k - 1} without optimizer.step() in between")
        if k >= self.total:
            raise RuntimeError(
                f"abcond.Logger: step {k} is past the {self.total} steps the config plans ({self._source}: train.steps, "
                f"or train.epochs × ⌊{self.examples} / batch_size⌋); give train.steps, or drop the last partial minibatch of an epoch (drop_last=True)"
            )
        idx = indices.detach().cpu().numpy() if isinstance(indices, torch.Tensor) else np.asarray(indices)
        if idx.ndim != 1 or idx.size == 0 or not np.issubdtype(idx.dtype, np.integer):
            raise ValueError(f"abcond.Logger: step {k}: indices must be a non-empty 1-D sequence of whole numbers, got shape {idx.shape} of {idx.dtype}")
        if idx.min() < 0 or idx.max() >= self.examples:
            raise ValueError(f"abcond.Logger: step {k}: example index {int(idx.max() if idx.max() >= self.examples else idx.min())} outside 0..{self.examples} (the examples of {self.config['data']['path']})")
        value = float(loss.detach()) if isinstance(loss, torch.Tensor) else float(loss)
        grads = [p.grad for _, p in self._params if p.grad is not None]
        if not grads:
            raise RuntimeError(f"abcond.Logger: step {k}: no parameter has a gradient; call log.step after loss.backward()")
        with torch.no_grad():
            sq = torch.zeros((), dtype=torch.float64, device=grads[0].device)
            for g in grads:
                g = g.to_dense() if g.is_sparse else g
                sq += g.double().square().sum()
            grad_norm = float(sq.sqrt())
        lrs = {float(g["lr"]) for g in self.optimizer.param_groups}
        lr = float(self.optimizer.param_groups[0]["lr"])
        step_size = lr if self._sgd and len(lrs) == 1 else None
        ep = int(epoch) if epoch is not None else k // max(self.steps_per_epoch, 1)
        if k in self._snapshot_set:
            self._snapshot(k)
        # wall_time_s: seconds since the Logger was made (the start of training).
        wall = time.monotonic() - self._t0
        self.rows.append((k, ep, lr, step_size, value, grad_norm, idx.astype(np.int64, copy=True), wall))
        self.k = k + 1
        self._updated = False
        if not math.isfinite(value):
            self._diverged(k, value)
        if k in self._snapshot_set and k > 0:
            self._flush_rows()

    def _diverged(self, k, value):
        self._flush_rows()
        self._finished = True
        self._hook.remove()
        self._write_manifest("diverged", message=f"loss {value} at step {k}", outcome="diverged", end_step=k)
        self._unlock()
        raise FloatingPointError(f"abcond.Logger: the loss is {value} at step {k}: the run is recorded as diverged in {self.run_dir}")

    def _snapshot(self, k):
        tensors = {}
        with self._torch.no_grad():
            for role, named in (("param", self._params), ("buffer", self._buffers)):
                for n, t in named:
                    t = t.detach().to("cpu", copy=True)
                    # Integer buffers (num_batches_tracked) are stored in the
                    # model dtype, as abcond stores them.
                    tensors[n] = (role, (t if t.is_floating_point() and t.dtype != self._torch.bfloat16 else t.double()).numpy())
        meta = [("abcond.content", "iterate"), ("abcond.run_id", self.run_id), ("abcond.step", str(k)), ("abcond.experiment", self.experiment)]
        store.write_tensors(os.path.join(self.run_dir, "iterates", f"step={k}", "part-0.parquet"), tensors, self.dtype, meta)
        self._written.append(k)

    def _flush_rows(self):
        """The rows since the last flush, as a part file (a killed loop keeps
        its loss curve)."""
        new = self.rows[self._flushed :]
        if not new:
            return
        first, last = new[0][0], new[-1][0]
        path = os.path.join(self.run_dir, "steps-parts", f"steps-{first:010d}-{last:010d}.parquet")
        store.write_steps(path, new, self.run_id, self.config["seed"])
        self._flushed = len(self.rows)

    def finish(self):
        """Writes the final iterate x^K (the weights after the last
        ``optimizer.step()``) and steps.parquet, and marks the run completed.
        A loop that stops early (K below the planned steps) is recorded as a
        run of K steps whose snapshots are the ones written."""
        if self._finished:
            return self.run_dir
        k = self.k
        if k == 0:
            raise RuntimeError("abcond.Logger: finish() before any step was logged")
        if not self._updated:
            raise RuntimeError(f"abcond.Logger: finish() before the optimizer.step() of step {k - 1}: x^K is the iterate after the last update")
        self._hook.remove()
        cfg = self.config
        message = None
        if k != self.total:
            message = f"the loop stopped at step {k} of the {self.total} planned; snapshots.at lists the snapshots written"
            cfg["train"] = {"batch_size": cfg["train"]["batch_size"], "steps": k}
            cfg["snapshots"] = {"at": sorted(set(self._written) | {k})}
            self.total = k
        if k not in self._written:
            self._snapshot(k)
        store.write_steps(os.path.join(self.run_dir, "steps.parquet"), self.rows, self.run_id, self.config["seed"])
        lrs = {r[2] for r in self.rows}
        self._constant = lrs == {self.optim["lr"]}
        self._write_manifest("completed", message=message, outcome="completed", end_step=k)
        shutil.rmtree(os.path.join(self.run_dir, "steps-parts"), ignore_errors=True)
        self._finished = True
        self._unlock()
        return self.run_dir

    def close(self, error=None):
        """Ends the run as failed (with ``error``'s message) unless it was
        finished; releases the directory's lock."""
        if not self._finished:
            self._finished = True
            self._hook.remove()
            self._flush_rows()
            self._write_manifest("failed", message=f"the loop failed at step {self.k}: {error!r}" if error else f"closed at step {self.k} before finish()", outcome="failed", end_step=self.k)
        self._unlock()

    def __enter__(self):
        return self

    def __exit__(self, kind, value, tb):
        if kind is None:
            self.finish()
        else:
            self.close(value)
        return False

    # --- run.yaml ---

    def _write_manifest(self, status, message=None, outcome=None, end_step=None):
        torch = self._torch
        from . import __version__

        cfg = dict(self.config)
        optim = dict(self.optim)
        cfg["optim"] = optim
        constant = getattr(self, "_constant", True)
        cfg["schedule"] = {"name": "constant" if constant else "recorded"}
        order = ["experiment", "seed", "device", "model", "data", "train", "optim", "schedule", "snapshots", "probe", "analysis"]
        cfg = {k: cfg[k] for k in order if k in cfg}
        session = dict(self._session)
        if outcome is not None:
            session.update(ended=_now(), end_step=end_step, outcome=outcome)
        done = self.k if status == "completed" else 0
        manifest = {
            "format": MANIFEST_FORMAT,
            "experiment": self.experiment,
            "run_id": self.run_id,
            "status": status,
            **({"message": message} if message else {}),
            "training": {
                "total_steps": self.total,
                "steps_per_epoch": self.steps_per_epoch,
                "examples": self.examples,
                "parameters": int(sum(p.numel() for _, p in self._params)),
                "steps_done": done,
                "snapshot_steps": len(snapshot_steps(cfg.get("snapshots") or {}, self.total)),
            },
            "provenance": {
                "abcond_version": f"python companion {__version__}",
                "git_commit": "",
                "torch_version_built": str(torch.__version__),
                "created": self._created,
            },
            "sessions": [session],
            "trainer": {
                "name": NAME,
                "version": __version__,
                "python": platform.python_version(),
                "torch_version": str(torch.__version__),
                "optimizer": self._optimizer_desc,
            },
            "config": cfg,
        }
        header = "# abcond run manifest, written by abcond.Logger from a PyTorch loop (do not edit)\n"
        text = store.seal(header + yaml.safe_dump(manifest, sort_keys=False, allow_unicode=True))
        store.write_text(os.path.join(self.run_dir, "run.yaml"), text)
