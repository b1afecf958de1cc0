"""Learning algorithms: pure loss functions and the small learners that compose them.

Entry points used by the experiment: :class:`FilteredIQL` (stage 3, every method),
:func:`fit_value_model` (stage 1), :func:`fit_behavior_vae` / :func:`load_behavior_vae` (OTDF).
The stage-1 advantages of all source transitions are :func:`dvdf.filtering.source_advantages`
(the package does not re-export filtering's functions).
"""

from dvdf.algos.filtered_iql import FilteredIQL
from dvdf.algos.runtime import retain_freed_memory
from dvdf.algos.vae import fit_behavior_vae, load_behavior_vae
from dvdf.algos.value_learner import ValueLearner, fit_value_model

__all__ = ["FilteredIQL", "ValueLearner", "fit_value_model", "fit_behavior_vae", "load_behavior_vae",
           "retain_freed_memory"]
