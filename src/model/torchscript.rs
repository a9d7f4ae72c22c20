//! `model: {kind: torchscript, path: model.pt}`: a PyTorch model brought by
//! its user, as a TorchScript module whose `forward(*inputs)` returns the
//! per-example losses (shape [B]) of a minibatch.
//!
//! The module protocol (`abcond.torchscript/1`, what `abcond.export` in the
//! Python companion writes; a hand-made module can follow it too):
//!
//! - `forward(t_1, …, t_m)` takes the minibatch's tensors of the data set in
//!   its declared order and returns f_i for each example, a float tensor of
//!   shape [B];
//! - `abcond_info() -> Dict[str, str]` (exported method) with the keys
//!   `protocol` (`abcond.torchscript/1`), `prefix` (stripped from every
//!   parameter and buffer name, e.g. `model.` for a wrapper holding the
//!   user's module as `self.model`), `buffers` (comma-separated names of the
//!   buffers, e.g. BatchNorm running statistics, with the prefix; the
//!   floating-point ones are snapshot, all are restored after a measurement),
//!   `batchnorm` and `dropout` (`true`/`false`: whether the module has such
//!   layers);
//! - `abcond_buffers() -> List[Tensor]` (exported method): those buffers, in
//!   that order (the tensors themselves, not copies).
//!
//! Parameters are the module's `named_parameters()` under their own names
//! (less the prefix), so snapshots keep the names of the user's state_dict
//! and `load_state_dict(strict=True)` accepts them. x^0 is the module's own
//! weights: `seed` does not re-initialise them (it still seeds the minibatch
//! order and the run id).
//!
//! Mode: training runs the module in train mode. The probe measures f_i in
//! eval mode, except for a module with BatchNorm under `probe.batchnorm:
//! batch-stats`, which is measured in train mode with its buffers restored
//! after each forward pass (running statistics untouched, as for the native
//! models); such a module must not also have dropout (f_i would be random).
//!
//! TorchScript is deprecated in PyTorch 2.x but loads and differentiates in
//! libtorch; the backend sits behind [`Net`], so a `torch.export` based one
//! can replace it without touching training or the probe. The graph
//! executor's optimisations (profiling, fusion) are switched off: a fused
//! kernel could round differently from the unfused first calls, and every
//! run must be bit-reproducible per seed on CPU.

use super::net::{BatchNormPolicy, Mode, Net};
use crate::data::Batch;
use anyhow::{anyhow, bail, Result};
use std::cell::{Cell, RefCell};
use tch::{CModule, Device, IValue, Kind, Tensor};

/// The protocol version a module declares in `abcond_info()["protocol"]`.
pub const PROTOCOL: &str = "abcond.torchscript/1";

/// A loaded module, its parameters registered in the model's VarStore.
pub struct TorchScript {
    module: RefCell<CModule>,
    /// The module file, for messages.
    source: String,
    /// The buffers to snapshot (the module's own tensors).
    buffers: Vec<Tensor>,
    has_batchnorm: bool,
    has_dropout: bool,
    /// The mode the module is in (None: not set yet).
    training: Cell<Option<bool>>,
}

/// libtorch's message without the C++ stack frames it appends ("Exception
/// raised from … frame #0: …"); TorchScript's own traceback is kept.
pub fn torch_message(e: &tch::TchError) -> String {
    let s = e.to_string();
    let s = s.strip_prefix("Internal torch error: ").unwrap_or(&s);
    match s.find("\nException raised from") {
        Some(i) => s[..i].trim_end().to_string(),
        None => s.trim_end().to_string(),
    }
}

/// What `abcond_info()` declares.
struct Info {
    prefix: String,
    buffers: Vec<String>,
    batchnorm: bool,
    dropout: bool,
}

fn info(module: &CModule, what: &str) -> Result<Info> {
    let v = module.method_is::<IValue>("abcond_info", &[]).map_err(|e| {
        anyhow!(
            "{what} has no method abcond_info(): it is not an abcond TorchScript module. Write it with `abcond.export(model, loss_fn, example_batch, path)` (Python companion), which adds the method ({})",
            torch_message(&e)
        )
    })?;
    let IValue::GenericDict(entries) = v else {
        bail!("{what}: abcond_info() must return Dict[str, str]");
    };
    let mut map = std::collections::BTreeMap::new();
    for (k, v) in entries {
        match (k, v) {
            (IValue::String(k), IValue::String(v)) => {
                map.insert(k, v);
            }
            _ => bail!("{what}: abcond_info() must return Dict[str, str]"),
        }
    }
    let get = |k: &str| {
        map.get(k)
            .cloned()
            .ok_or_else(|| anyhow!("{what}: abcond_info() lacks the key `{k}`"))
    };
    let protocol = get("protocol")?;
    if protocol != PROTOCOL {
        bail!(
            "{what}: abcond_info() declares protocol {protocol:?}; this abcond reads {PROTOCOL:?}"
        );
    }
    let flag = |k: &str| -> Result<bool> {
        match get(k)?.as_str() {
            "true" => Ok(true),
            "false" => Ok(false),
            other => {
                bail!("{what}: abcond_info()[{k:?}] is {other:?}, expected \"true\" or \"false\"")
            }
        }
    };
    let buffers = get("buffers")?;
    Ok(Info {
        prefix: get("prefix")?,
        buffers: buffers
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
        batchnorm: flag("batchnorm")?,
        dropout: flag("dropout")?,
    })
}

/// Registers `tensor` in the VarStore under the dotted `name` (one sub-path
/// per component, as the native models' names are made).
fn register(root: &tch::nn::Path, name: &str, tensor: Tensor, trainable: bool) {
    let mut parts: Vec<&str> = name.split('.').collect();
    let last = parts.pop().expect("a name");
    let p = parts.iter().fold(root.clone(), |p, part| p.sub(*part));
    let _ = p.add(last, tensor, trainable);
}

impl TorchScript {
    /// Loads `file`, converts its floating-point tensors to `kind` (on the
    /// CPU: the model is moved to its device afterwards) and registers its
    /// parameters and buffers under `root`.
    pub fn load(root: &tch::nn::Path, file: &std::path::Path, kind: Kind) -> Result<TorchScript> {
        let what = file.display().to_string();
        // Reproducible per seed: no profiling-driven re-optimisation.
        tch::jit::set_graph_executor_optimize(false);
        if !file.is_file() {
            bail!(
                "key `model.path`: the TorchScript module {what} does not exist (or is not a file)"
            );
        }
        let mut module = CModule::load_on_device(file, Device::Cpu).map_err(|e| {
            anyhow!("{what} is not a loadable TorchScript module (written by torch.jit.save or abcond.export?): {}", torch_message(&e))
        })?;
        module.to(Device::Cpu, kind, false);
        let info = info(&module, &what)?;
        let strip = |name: &str| -> Result<String> {
            name.strip_prefix(&info.prefix)
                .filter(|n| !n.is_empty())
                .map(str::to_string)
                .ok_or_else(|| {
                    anyhow!(
                        "{what}: tensor `{name}` does not start with the declared prefix {:?}",
                        info.prefix
                    )
                })
        };
        let params = module
            .named_parameters()
            .map_err(|e| anyhow!("{what}: listing its parameters: {}", torch_message(&e)))?;
        if params.is_empty() {
            bail!("{what} has no parameters: there is nothing to train or measure (a scripted function, or a module whose weights are constants?)");
        }
        let mut names = std::collections::BTreeSet::new();
        for (name, t) in params {
            let n = strip(&name)?;
            if !t.is_floating_point() {
                bail!(
                    "{what}: parameter `{name}` is {:?}, not floating point",
                    t.kind()
                );
            }
            names.insert(n.clone());
            register(root, &n, t, true);
        }
        let buffers = match module.method_is::<IValue>("abcond_buffers", &[]) {
            Ok(IValue::TensorList(ts)) => ts,
            Ok(IValue::GenericList(v)) if v.is_empty() => vec![],
            Ok(_) => bail!("{what}: abcond_buffers() must return List[Tensor]"),
            Err(e) => bail!("{what}: calling abcond_buffers(): {}", torch_message(&e)),
        };
        if buffers.len() != info.buffers.len() {
            bail!(
                "{what}: abcond_buffers() returns {} tensors but abcond_info() names {} buffers",
                buffers.len(),
                info.buffers.len()
            );
        }
        for (name, t) in info.buffers.iter().zip(&buffers) {
            let n = strip(name)?;
            if !names.insert(n.clone()) {
                bail!("{what}: buffer `{name}` has the name of another tensor");
            }
            // Integer buffers (BatchNorm's num_batches_tracked) are restored
            // after measuring but not snapshot: a snapshot holds values of
            // the model dtype.
            if t.is_floating_point() {
                register(root, &n, t.shallow_clone(), false);
            }
        }
        Ok(TorchScript {
            module: RefCell::new(module),
            source: what,
            buffers,
            has_batchnorm: info.batchnorm,
            has_dropout: info.dropout,
            training: Cell::new(None),
        })
    }

    fn set_training(&self, on: bool) {
        if self.training.get() != Some(on) {
            let mut m = self.module.borrow_mut();
            if on {
                m.set_train();
            } else {
                m.set_eval();
            }
            self.training.set(Some(on));
        }
    }

    /// Runs the module's forward pass on `inputs` and checks its output: a
    /// float tensor of shape [B].
    pub fn try_forward(&self, inputs: &[Tensor], b: usize) -> Result<Tensor> {
        let out = self.module.borrow().forward_ts(inputs).map_err(|e| {
            let shown: Vec<String> = inputs
                .iter()
                .map(|t| format!("{:?} {:?}", t.kind(), t.size()))
                .collect();
            anyhow!(
                "{}: forward({}) failed: {}",
                self.source,
                shown.join(", "),
                torch_message(&e)
            )
        })?;
        if out.size() != [b as i64] {
            bail!(
                "{}: forward() returned a tensor of shape {:?}; expected the per-example losses, shape [{b}] (use reduction='none' in the loss)",
                self.source,
                out.size()
            );
        }
        if !out.is_floating_point() {
            bail!(
                "{}: forward() returned {:?} values, expected floating point",
                self.source,
                out.kind()
            );
        }
        Ok(out)
    }

    /// A trial forward pass on `inputs` (eval mode, no gradient, no state
    /// changed): the module accepts the data set's tensors and returns [B].
    pub fn check_inputs(&self, inputs: &[Tensor]) -> Result<()> {
        let b = inputs.first().map_or(0, |t| t.size()[0]) as usize;
        self.set_training(false);
        tch::no_grad(|| self.try_forward(inputs, b)).map(|_| ())
    }
}

impl Net for TorchScript {
    fn train_is_measure(&self, _policy: BatchNormPolicy) -> bool {
        !self.has_batchnorm && !self.has_dropout
    }

    fn loop_randomness(&self) -> bool {
        self.has_dropout
    }

    fn per_example_loss(&self, batch: &Batch, mode: Mode) -> Tensor {
        let restore = match mode {
            Mode::Train => {
                self.set_training(true);
                None
            }
            Mode::Measure(BatchNormPolicy::BatchStats) if self.has_batchnorm => {
                self.set_training(true);
                Some(tch::no_grad(|| {
                    self.buffers.iter().map(Tensor::copy).collect::<Vec<_>>()
                }))
            }
            Mode::Measure(_) => {
                self.set_training(false);
                None
            }
        };
        let out = self.try_forward(&batch.tensors(), batch.len);
        if let Some(saved) = restore {
            // The buffers take the saved copies' storage (set_data, not an
            // in-place copy: autograd saved the running statistics for the
            // backward pass still to come, and an in-place write would
            // invalidate its graph; the gradient does not depend on them).
            tch::no_grad(|| {
                for (b, s) in self.buffers.iter().zip(&saved) {
                    b.shallow_clone().set_data(s);
                }
            });
        }
        out.unwrap_or_else(|e| panic!("{e:#}"))
    }

    fn has_batchnorm(&self) -> Option<bool> {
        Some(self.has_batchnorm)
    }

    fn check_policy(&self, policy: BatchNormPolicy) -> Result<()> {
        if self.has_batchnorm && self.has_dropout && policy == BatchNormPolicy::BatchStats {
            bail!(
                "{}: the module has BatchNorm and dropout; under `probe.batchnorm: batch-stats` it would be measured in train mode, with dropout on (f_i would be random). Set `probe.batchnorm: running-stats`",
                self.source
            );
        }
        Ok(())
    }

    fn to_device(&mut self, device: Device) {
        // Parameters and buffers moved with the VarStore (set_data keeps
        // their identity); the module's other tensors move here.
        let mut m = self.module.borrow_mut();
        let float = m
            .named_parameters()
            .ok()
            .and_then(|p| p.first().map(|(_, t)| t.kind()))
            .unwrap_or(Kind::Float);
        m.to(device, float, false);
    }
}
