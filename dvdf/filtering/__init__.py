"""Source-data filtering without learning: OTDF's optimal-transport dynamics score and the
per-batch selection and weighting of stage 3.

The learned scores (IGDF's contrastive encoders, the stage-1 value model) are learners and live in
:mod:`dvdf.algos`, which uses this package; nothing here imports :mod:`dvdf.algos`.
"""

from dvdf.filtering.optimal_transport import ot_scores

__all__ = ["ot_scores"]
