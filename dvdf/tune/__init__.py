"""Ray Tune sweeps of dvdf experiments (with :mod:`dvdf.data.suite_ray`, the only code that imports Ray).

Modules: ``spec`` (the sweep YAML: parsing, validation, groups and studies; no Ray),
``prepare`` (datasets and stages built once before trials; no Ray), ``searcher`` (one Optuna
study per group x method behind one Tuner), ``scheduler`` (ASHA within studies), ``trainable``
(the thin wrapper of run_experiment), ``callbacks`` (TensorBoard HParams, trial lines),
``runner`` (the Tuner, resume, results; documents the experiment directory layout),
``results`` and ``storage`` (results tables from an experiment directory; no Ray).
Dataset suites as Ray tasks are data generation, not Tune: :mod:`dvdf.data.suite_ray`.

Importing this package imports nothing heavy; ``dvdf sweep`` is the command line.
"""
