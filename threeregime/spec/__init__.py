"""The spec layer: the typed hyperparameters of every stage and the keys that name artifacts.

Nothing here imports torch, numpy, pandas or matplotlib, so the Snakefile plans the whole DAG
from these classes alone (tests/test_spec_layer.py plans every reference study in a process
where importing torch fails). Implementations (a network, an optimizer's step) are named by
"module:attribute" strings and imported only where they run (`resolve`).

  common     ConfigError, number formatting, digests, deep_merge, lazy `resolve`
  train      TrainSpec (optimizer, schedule) and the OPTIMIZERS registry
  model      ModelSpec and the ARCHITECTURES registry
  data       DataSpec (what and where) and DataIdentity (what only: part of keys)
  prune      PruneSpec and the pruning METHODS
  landscape  LandscapeSpec (what the LMC/CKA measurement samples)
  identity   DenseRun, RetrainSpec, CellSpec: each artifact's hyperparameters and its path

The regime thresholds and rule live in threeregime.regimes (also torch-free).
"""
