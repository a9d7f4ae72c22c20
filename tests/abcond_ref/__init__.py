"""abcond_ref: the tests' Python in one package — PyTorch reference
implementations of abcond's models and data, written independently of the Rust
code from the model definitions in the paper, the references cited in
src/model/*.rs and the layout documented in docs/schemas.md. The checker
scripts tests/check_*.py, tests/parity.py and tests/compare_landscapes.py and
the benchmarks in bench/ import from here; nothing here imports a checker.

Modules:
    models       MLP, TwoLayer, Halfspace, MatrixFactorisation, CNN, ResNet9,
                 ResNetCifar (ResNet-18/34) and their BatchNorm policy
                 (BN_POLICY, bn_policy); build(), the module of a `model` section
    vision       ImageNet ResNet-50 and ViT (AlgoPerf definitions)
    transformer  the WMT encoder-decoder Transformer (AlgoPerf definition)
    runs         Run: an abcond run directory (run.yaml, data.parquet and the
                 dataset files, iterate snapshots); read_snapshot; the IDX and
                 CIFAR readers; grad_at / loss_at on a run's examples
    rng          the portable generator of src/rng.rs (SplitMix64-seeded
                 xoshiro256**, Lemire's bounded integers)
    optim        the torch.optim optimiser and lr_scheduler of a resolved
                 `optim` / `schedule` section
    compare      relative errors (rel_err, rel_vec), flat, landscape_errors

Reading an abcond run directory:
    from abcond_ref.runs import Run
    run = Run(path)           # run.yaml, data, snapshots
    model = run.model()       # torch.nn.Module with abcond's parameter names
    run.load(model, step)     # x^k from iterates/step=<k>/part-0.parquet
    losses = model(x, y)      # per-example losses f_i, shape [B]

How it is imported: the package is the directory tests/abcond_ref, found
through sys.path like any top-level package; nothing is installed and no
script edits sys.path.
  - The checkers are scripts in tests/, and Python puts a script's own
    directory first on sys.path, so `python tests/parity.py RUN` finds it
    as is. The Rust tests also put tests/ first on PYTHONPATH
    (tests/common/mod.rs: python_cmd, used by run_python and py; tests/cuda.rs
    likewise), which covers `python -c` code too.
  - The benchmarks live in bench/: bench/run.py puts tests/ on PYTHONPATH for
    the scripts it starts; run one by hand from the repository root as
        PYTHONPATH=tests python bench/torch_train.py ...
    (likewise bench/torch_probe.py and bench/memory.py).
State that a caller may set lives in its module: set models.BN_POLICY (or
replace models.bn_policy) on abcond_ref.models itself, not on a copy of the
name imported elsewhere.
"""
