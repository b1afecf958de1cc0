"""Learning algorithms: pure loss functions and the small learners that compose them.

Entry points used by the experiment: :class:`FilteredIQL` (stage 3, every method),
:func:`fit_value_model` and :func:`source_advantages` (stage 1: the value model and the advantages
of all source transitions), :func:`fit_contrastive_scorer` (stage 2, IGDF's learned dynamics score),
:func:`fit_behavior_vae` / :func:`load_behavior_vae` (OTDF).

Dependencies run one way: algos may use :mod:`dvdf.filtering` (scores computed without learning,
per-batch selection); filtering never imports algos.
"""

from dvdf.algos.contrastive import ContrastiveScorer, fit_contrastive_scorer
from dvdf.algos.filtered_iql import FilteredIQL
from dvdf.algos.runtime import retain_freed_memory
from dvdf.algos.vae import fit_behavior_vae, load_behavior_vae
from dvdf.algos.value_learner import ValueLearner, fit_value_model, source_advantages

__all__ = ["FilteredIQL", "ValueLearner", "fit_value_model", "source_advantages", "ContrastiveScorer",
           "fit_contrastive_scorer", "fit_behavior_vae", "load_behavior_vae", "retain_freed_memory"]
