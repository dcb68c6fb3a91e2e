"""vaelib: the tested library behind the book *Variational Autoencoders, Step by Step*.

One module per idea: :mod:`~vaelib.data`, :mod:`~vaelib.models`, :mod:`~vaelib.losses`,
:mod:`~vaelib.estimators`, :mod:`~vaelib.recipe` (the training recipe), :mod:`~vaelib.training` (with
:mod:`~vaelib.callbacks` and :mod:`~vaelib.checkpoints`), :mod:`~vaelib.device`, :mod:`~vaelib.evaluation`,
:mod:`~vaelib.plots`, :mod:`~vaelib.diagrams`,
:mod:`~vaelib.widgets`, :mod:`~vaelib.live` (the decoders that run in the HTML book's pages);
the book's own switches and models in :mod:`~vaelib.book`; the checkers of the chapters' coding
exercises in :mod:`~vaelib.exercises`; the command line in :mod:`~vaelib.cli`
(``python -m vaelib``).
"""

__version__ = "0.3.0"

from vaelib import book, exercises
from vaelib.checkpoints import load_checkpoint, save_checkpoint
from vaelib.data import Dataset, Split, batches, load_dataset
from vaelib.device import get_device
from vaelib.errors import CheckpointError, ConfigError, DataError, DeviceError, TrainingDiverged, VaelibError
from vaelib.evaluation import active_units, evaluate, iw_log_likelihood
from vaelib.losses import ELBOTerms, bernoulli_nll, elbo_terms, gaussian_kl, kl_monte_carlo
from vaelib.models import VAE, Autoencoder, Model, ModelConfig, build_model, count_parameters
from vaelib.recipe import TrainConfig
from vaelib.training import fit, seed_everything

__all__ = [
    "Autoencoder", "CheckpointError", "ConfigError", "DataError", "Dataset", "DeviceError", "ELBOTerms", "Model",
    "ModelConfig", "Split", "TrainConfig", "TrainingDiverged", "VAE", "VaelibError", "active_units", "batches",
    "bernoulli_nll", "book", "build_model", "count_parameters", "elbo_terms", "evaluate", "exercises", "fit",
    "gaussian_kl", "get_device", "iw_log_likelihood", "kl_monte_carlo", "load_checkpoint",
    "load_dataset", "save_checkpoint", "seed_everything",
]
