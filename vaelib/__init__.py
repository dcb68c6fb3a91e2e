"""vaelib: the tested library behind the book *Variational Autoencoders, Step by Step*.

One module per idea: :mod:`~vaelib.data`, :mod:`~vaelib.models`, :mod:`~vaelib.losses`,
:mod:`~vaelib.estimators`, :mod:`~vaelib.training`, :mod:`~vaelib.evaluation`, :mod:`~vaelib.plots`,
:mod:`~vaelib.widgets`, and the command line in :mod:`~vaelib.cli` (``python -m vaelib``).
"""

__version__ = "0.1.0"

from vaelib.data import Dataset, Split, batches, default_dataset, load_dataset
from vaelib.errors import CheckpointError, DataError, TrainingDiverged, VaelibError
from vaelib.evaluation import active_units, evaluate, iw_log_likelihood
from vaelib.losses import bernoulli_nll, elbo_terms, gaussian_kl, kl_monte_carlo
from vaelib.models import VAE, Autoencoder, ModelConfig, build_model
from vaelib.training import (TrainConfig, book_config, book_model, fit, get_device, is_quick,
                             load_checkpoint,
                             save_checkpoint, seed_everything, train_or_load)

__all__ = [
    "Autoencoder", "CheckpointError", "DataError", "Dataset", "ModelConfig", "Split", "TrainConfig",
    "TrainingDiverged", "VAE", "VaelibError", "active_units", "batches", "bernoulli_nll",
    "book_config", "book_model", "build_model", "default_dataset", "elbo_terms", "evaluate", "fit", "gaussian_kl", "get_device",
    "is_quick", "iw_log_likelihood", "kl_monte_carlo", "load_checkpoint", "load_dataset",
    "save_checkpoint", "seed_everything", "train_or_load",
]
