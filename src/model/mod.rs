//! Models f(x) = (1/n) Σ f_i(x): each exposes per-example losses f_i and named
//! parameters. Parameter names are the snapshot keys (rows of the iterate
//! Parquet files) and follow PyTorch's state_dict naming, so a PyTorch model
//! with the same layer names loads an abcond snapshot as is.
//!
//! Initialisation reproduces PyTorch: with `torch.manual_seed(seed)` the
//! PyTorch reference module (tests/torch_models.py) starts from bit-identical
//! weights on CPU.

pub mod config;
pub mod halfspace;
pub mod known;
pub mod matfact;
pub mod mlp;
pub mod net;
pub mod two_layer;
// --- CIFAR vision models ---
pub mod cnn;
pub mod layers;
pub mod resnet;
pub mod resnet9;
// ImageNet models (AlgoPerf imagenet_resnet, imagenet_vit).
pub mod resnet50;
pub mod vit;
// WMT model (AlgoPerf wmt), on synthetic token data.
pub mod transformer;
// The user's own model, as a TorchScript module.
pub mod torchscript;
// Language models.
pub mod dlrm;
pub mod gnn;
pub mod gpt_neox;
pub mod lstm;
pub mod unet;

pub use net::{BatchNormPolicy, Mode, Net};

use crate::data::{Batch, Dataset, Targets};
use crate::model::config::{Arch, ModelConfig, ModelKind};
use crate::store::tensors::{NamedTensor, Role, TensorFile, TensorReader};
use crate::torch::dtype::Dtype;
use anyhow::{bail, Result};
use tch::nn::VarStore;
use tch::{Device, Tensor};

pub struct Model {
    pub vs: VarStore,
    net: Box<dyn Net>,
    pub dtype: Dtype,
    pub kind: ModelKind,
    /// The VarStore's tensors sorted by name, listed once (they never change
    /// identity, only values), so that per-step code does not rebuild the list.
    named: Vec<NamedTensor>,
    /// libtorch's optimizer over the parameters, never stepped: its
    /// `zero_grad` drops the gradients (set to none, as PyTorch's default),
    /// which tch's `Tensor::zero_grad` (zeroing in place) cannot.
    grad_reset: tch::COptimizer,
}

impl Model {
    /// Builds the model for `data`, initialised from `seed` like PyTorch would
    /// after `torch.manual_seed(seed)`.
    pub fn build(cfg: &ModelConfig, data: &Dataset, device: Device, seed: u64) -> Result<Model> {
        // Initialised on the CPU and then moved, so that x^0 is the same on every
        // device (and equals PyTorch's CPU initialisation after torch.manual_seed):
        // CUDA's generator draws different numbers from the same seed.
        let mut vs = VarStore::new(Device::Cpu);
        vs.set_kind(cfg.dtype.kind());
        tch::manual_seed(seed as i64);
        let root = vs.root();
        let input_dim: i64 = data.input_shape.iter().product();
        let mut net: Box<dyn Net> = match (&cfg.arch, data.targets) {
            (Arch::Mlp(s), Targets::Classes(c)) => {
                Box::new(mlp::Mlp::new(&root, input_dim, s.width, c))
            }
            (Arch::TwoLayerRelu(s), Targets::Classes(2)) => {
                Box::new(two_layer::TwoLayer::new(&root, input_dim, s.width))
            }
            (Arch::Halfspace(s), Targets::Classes(2)) => Box::new(halfspace::Halfspace::new(
                &root, input_dim, s.lambda, s.init_std,
            )),
            (Arch::MatrixFactorisation(s), Targets::MatrixEntries { rows, cols }) => Box::new(
                matfact::MatrixFactorisation::new(&root, rows, cols, s.rank, s.init_std),
            ),
            (Arch::Cnn(s), Targets::Classes(c)) => {
                Box::new(cnn::Cnn::new(&root, &data.input_shape, s.width, c))
            }
            (Arch::Resnet9(_), Targets::Classes(c)) => {
                Box::new(resnet9::ResNet9::new(&root, data.input_shape[0], c))
            }
            (Arch::Resnet18(_), Targets::Classes(c)) => Box::new(resnet::ResNet::new(
                &root,
                resnet::RESNET18,
                data.input_shape[0],
                c,
            )),
            (Arch::Resnet34(_), Targets::Classes(c)) => Box::new(resnet::ResNet::new(
                &root,
                resnet::RESNET34,
                data.input_shape[0],
                c,
            )),
            (Arch::Resnet50(s), Targets::Classes(c)) => {
                if data.input_shape.len() != 3 || data.input_shape[0] != 3 {
                    bail!(
                        "model kind `resnet50` needs RGB images [3, H, W], got input shape {:?}",
                        data.input_shape
                    );
                }
                Box::new(resnet50::ResNet50::new(&root, s.width, c))
            }
            (Arch::Vit(s), Targets::Classes(c)) => {
                Box::new(vit::Vit::new(&root, *s, &data.input_shape, c)?)
            }
            (Arch::Lstm(s), Targets::NextTokens { vocab, .. }) => {
                Box::new(lstm::Lstm::new(&root, *s, vocab))
            }
            (Arch::GptNeox(s), Targets::NextTokens { vocab, .. }) => {
                Box::new(gpt_neox::GptNeox::new(&root, *s, vocab))
            }
            (Arch::Gnn(s), Targets::Graphs { tasks }) => {
                let (node_dim, edge_dim) = gnn::Gnn::check_data(s, &data.input_shape)?;
                Box::new(gnn::Gnn::new(&root, *s, node_dim, edge_dim, tasks))
            }
            (Arch::Unet(s), Targets::Images { .. }) => Box::new(unet::Unet::new(&root, *s)),
            (Arch::Dlrm(s), Targets::Clicks) => {
                Box::new(dlrm::Dlrm::new(&root, s.clone(), data.input_shape[0])?)
            }
            (Arch::Transformer(s), Targets::Tokens { vocab, .. }) => {
                Box::new(transformer::Transformer::new(&root, *s, vocab)?)
            }
            (Arch::Torchscript(s), _) => {
                if let Some(want) = &s.digest {
                    let got = crate::util::file_digest(&s.path)?;
                    if &got != want {
                        bail!(
                            "{}: the TorchScript module changed since the config was read (digest {got}, recorded {want}); a run measures the model it was trained with: restore the file, or train a new run",
                            s.path.display()
                        );
                    }
                }
                let net = torchscript::TorchScript::load(&root, &s.path, cfg.dtype.kind())?;
                // A trial forward pass on the first examples: the module takes
                // the data set's tensors and returns [B].
                let n = data.len.min(2) as i64;
                let trial = data.batch_at(&(0..n).collect::<Vec<_>>(), None)?;
                let trial: Vec<Tensor> = trial
                    .tensors()
                    .iter()
                    .map(|t| t.to_device(Device::Cpu))
                    .collect();
                net.check_inputs(&trial).map_err(|e| {
                    anyhow::anyhow!(
                        "{e:#}\n(the data set's tensors, in order: {})",
                        if data.inputs.is_empty() {
                            "x, y".to_string()
                        } else {
                            data.inputs
                                .iter()
                                .map(|(n, _)| n.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        }
                    )
                })?;
                Box::new(net)
            }
            (arch, Targets::Components(_)) if arch.kind().is_known_answer() => {
                Box::new(known::KnownNet::new(&root, cfg)?)
            }
            (arch, targets) => {
                bail!(
                    "model kind `{}` does not fit data with targets {targets:?}",
                    arch.kind().name()
                )
            }
        };
        if device != Device::Cpu {
            vs.set_device(device);
            net.to_device(device);
        }
        let mut named: Vec<NamedTensor> = vs
            .variables()
            .into_iter()
            .map(|(name, tensor)| NamedTensor {
                role: if tensor.requires_grad() {
                    Role::Param
                } else {
                    Role::Buffer
                },
                name,
                tensor,
            })
            .collect();
        named.sort_by(|a, b| a.name.cmp(&b.name));
        let mut grad_reset = tch::COptimizer::sgd(0.0, 0.0, 0.0, 0.0, false)?;
        for t in named.iter().filter(|t| t.role == Role::Param) {
            grad_reset.add_parameters(&t.tensor, 0)?;
        }
        Ok(Model {
            vs,
            net,
            dtype: cfg.dtype,
            kind: cfg.kind(),
            named,
            grad_reset,
        })
    }

    pub fn device(&self) -> Device {
        self.vs.device()
    }

    /// The known-answer problem behind this model (None for networks).
    pub fn known(&self) -> Option<&known::Problem> {
        self.net.known()
    }

    /// Whether the model has BatchNorm layers (running statistics are
    /// snapshot buffers; measuring with batch statistics needs whole minibatches).
    pub fn has_batchnorm(&self) -> bool {
        self.net
            .has_batchnorm()
            .unwrap_or_else(|| self.kind.has_batchnorm())
    }

    /// Whether training's forward pass computes exactly the per-example losses
    /// the probe measures under `policy` (see [`Net::train_is_measure`]).
    pub fn train_is_measure(&self, policy: BatchNormPolicy) -> bool {
        self.net.train_is_measure(policy)
    }

    /// See [`Net::loop_randomness`].
    pub fn loop_randomness(&self) -> bool {
        self.net.loop_randomness()
    }

    /// Checks that the probe can measure f_i under `policy` with chunks of
    /// `chunk_size` examples of minibatches of `batch_size`.
    pub fn check_measurable(
        &self,
        policy: BatchNormPolicy,
        chunk_size: usize,
        batch_size: usize,
    ) -> Result<()> {
        self.net.check_policy(policy)?;
        if self.has_batchnorm() && policy == BatchNormPolicy::BatchStats && chunk_size < batch_size
        {
            bail!(
                "key `probe.chunk_size` ({chunk_size}) must be at least `train.batch_size` ({batch_size}) for this model (it has BatchNorm) under `probe.batchnorm: batch-stats`: BatchNorm would normalise each chunk by its own statistics"
            );
        }
        Ok(())
    }

    /// Per-example losses f_i, shape [B].
    pub fn per_example_loss(&self, batch: &Batch, mode: Mode) -> Tensor {
        self.net.per_example_loss(batch, mode)
    }

    /// Class logits of a classifier (None for other models).
    pub fn logits(&self, batch: &Batch, mode: Mode) -> Option<Tensor> {
        self.net.logits(batch, mode)
    }

    /// The minibatch loss (1/B) Σ_{i in batch} f_i.
    pub fn loss(&self, batch: &Batch, mode: Mode) -> Tensor {
        self.per_example_loss(batch, mode).mean(self.dtype.kind())
    }

    /// All tensors of the model (parameters and buffers), sorted by name.
    pub fn tensors(&self) -> Vec<NamedTensor> {
        self.named
            .iter()
            .map(|t| NamedTensor {
                name: t.name.clone(),
                role: t.role,
                tensor: t.tensor.shallow_clone(),
            })
            .collect()
    }

    /// Trainable parameters, sorted by name: the coordinates of x.
    pub fn params(&self) -> Vec<(String, Tensor)> {
        self.tensors()
            .into_iter()
            .filter(|t| t.role == Role::Param)
            .map(|t| (t.name, t.tensor))
            .collect()
    }

    pub fn num_params(&self) -> i64 {
        self.params().iter().map(|(_, t)| t.numel() as i64).sum()
    }

    /// Drops the parameters' gradients (PyTorch's `zero_grad(set_to_none=True)`).
    /// The next backward pass then hands its gradient tensors over as `.grad`
    /// instead of adding them into zeroed ones: no transient second copy of
    /// each gradient (the largest tensor's, ~1 M for the MLPs), and no extra
    /// pass over memory. Gradients are undefined until that backward pass.
    pub fn zero_grad(&self) {
        self.grad_reset
            .zero_grad()
            .expect("libtorch's optimizer zero_grad");
    }

    /// Copies the model tensors of `file` (read from `source`) into this model.
    /// Names, roles and shapes must match exactly.
    pub fn load(&self, file: &TensorFile, source: &str) -> Result<()> {
        let theirs: Vec<(&str, Role, Vec<i64>)> = file
            .tensors
            .iter()
            .map(|t| (t.name.as_str(), t.role, t.tensor.size()))
            .collect();
        let mine = self.check_match(&theirs, file.dtype, source)?;
        for (m, i) in mine.iter().zip(self.match_indices(&theirs)) {
            let mut dst = m.tensor.shallow_clone();
            tch::no_grad(|| dst.copy_(&file.tensors[i].tensor));
        }
        Ok(())
    }

    /// Loads the model tensors of the tensor file behind `reader` (read from
    /// `source`), streaming: every chunk goes from the Parquet decoder straight
    /// into its parameter, so loading x^k never holds a second copy of the
    /// model (the probe keeps only x^k, x^K and the gradient). Names, roles and
    /// shapes are checked against the file's table of contents before any value
    /// is copied; optimiser state in the file is skipped undecoded.
    pub fn load_from(&self, reader: &TensorReader, source: &str) -> Result<()> {
        let theirs: Vec<(&str, Role, Vec<i64>)> = reader
            .tensors
            .iter()
            .map(|h| (h.name.as_str(), h.role, h.shape.clone()))
            .collect();
        let mine = self.check_match(&theirs, reader.dtype, source)?;
        // Views of the parameters, made and written under no_grad (autograd
        // forbids a view made there to be written with grad mode on).
        tch::no_grad(|| {
            let mut dest: Vec<Option<Tensor>> = (0..theirs.len()).map(|_| None).collect();
            for (m, i) in mine.iter().zip(self.match_indices(&theirs)) {
                let flat = m.tensor.f_view([-1]).map_err(|e| {
                    anyhow::anyhow!("tensor `{}` of the model is not contiguous: {e}", m.name)
                })?;
                dest[i] = Some(flat);
            }
            reader.for_each_chunk(
                |t| dest[t].is_some(),
                |t, offset, chunk| {
                    let d = dest[t].as_ref().unwrap();
                    chunk.copy_into(&d.narrow(0, offset as i64, chunk.len() as i64));
                    Ok(())
                },
            )
        })
    }

    /// For each model tensor (sorted by name), the position of its namesake in
    /// `theirs` (which [`Model::check_match`] has checked).
    fn match_indices(&self, theirs: &[(&str, Role, Vec<i64>)]) -> Vec<usize> {
        self.named
            .iter()
            .map(|m| {
                theirs
                    .iter()
                    .position(|t| t.1 != Role::Optim && t.0 == m.name)
                    .unwrap()
            })
            .collect()
    }

    /// Checks that the model tensors (`param`/`buffer` entries) of a file with
    /// entries `theirs` (name, role, shape) and values of `dtype` are exactly this
    /// model's; returns the model's tensors.
    fn check_match(
        &self,
        theirs: &[(&str, Role, Vec<i64>)],
        dtype: Dtype,
        source: &str,
    ) -> Result<Vec<NamedTensor>> {
        let mine = self.tensors();
        let theirs: Vec<&(&str, Role, Vec<i64>)> =
            theirs.iter().filter(|t| t.1 != Role::Optim).collect();
        let missing: Vec<&str> = mine
            .iter()
            .filter(|m| !theirs.iter().any(|t| t.0 == m.name))
            .map(|m| m.name.as_str())
            .collect();
        let extra: Vec<&str> = theirs
            .iter()
            .filter(|t| !mine.iter().any(|m| m.name == t.0))
            .map(|t| t.0)
            .collect();
        if !missing.is_empty() || !extra.is_empty() {
            bail!(
                "{source} does not hold this model's tensors: missing [{}], unexpected [{}]; expected [{}]",
                missing.join(", "),
                extra.join(", "),
                mine.iter().map(|m| m.name.as_str()).collect::<Vec<_>>().join(", ")
            );
        }
        if dtype != self.dtype {
            bail!(
                "{source} stores {} values but the model is {}",
                dtype.name(),
                self.dtype.name()
            );
        }
        for m in &mine {
            let t = theirs.iter().find(|t| t.0 == m.name).unwrap();
            if t.2 != m.tensor.size() || t.1 != m.role {
                bail!(
                    "{source}: tensor `{}` is a {} of shape {:?}, expected a {} of shape {:?}",
                    m.name,
                    t.1.name(),
                    t.2,
                    m.role.name(),
                    m.tensor.size()
                );
            }
        }
        Ok(mine)
    }
}
