"""Python companion of abcond: export a PyTorch model and its data for the
abcond binary, record your own PyTorch training loop as an abcond run
(``Logger``), and read abcond's run directories with every checksum
verified. The measuring happens in the binary."""

from .checksum import ChecksumError
from .export import export, save_tensors
from .logger import Logger, snapshot_steps
from .runs import Experiment, Run, load_experiment, load_iterate, load_run, read_manifest, read_table, read_tensors

__all__ = [
    "ChecksumError",
    "Experiment",
    "Logger",
    "Run",
    "export",
    "load_experiment",
    "load_iterate",
    "load_run",
    "read_manifest",
    "read_table",
    "read_tensors",
    "save_tensors",
    "snapshot_steps",
]
__version__ = "0.1.0"
