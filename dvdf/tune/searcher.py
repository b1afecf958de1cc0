"""One Ray Tune searcher for the whole sweep: a separate search per study (group x method).

Ray refuses ``tune.grid_search`` mixed with OptunaSearch, and one OptunaSearch would treat the
groups as one problem. :class:`StudySearcher` keeps one Optuna study per study instead (TPE
seeded from the study name, the paper default lambda = 0.7, xi = 0.5 enqueued first) and hands
out suggestions round-robin over the studies, so every group makes progress at the same time.
Grid and fixed sweeps enumerate their points through the same class: there is always exactly
one Tuner, one experiment directory and one resume.

The Optuna studies live in an Optuna RDB storage (:func:`optuna_storage_url`): by default the
SQLite file ``optuna.db`` in the sweep's experiment directory, one study per study named like
it; with ``search.storage`` a database URL (PostgreSQL, MySQL on a cluster), the studies there
are named ``<sweep name>/<study name>`` so that sweeps sharing a database never mix. Every ask
and tell is committed at once, so ``optuna-dashboard <url>`` shows the studies live and the
history survives a killed driver. What the database does not know - how many points each study
has handed out, which Ray trial is which Optuna trial, the samplers' random state - is pickled
by :meth:`save` whenever Tune checkpoints the experiment and comes back through :meth:`restore`
on ``Tuner.restore``; the studies themselves are reopened from the database. Without a storage
URL (a sweep on an object store with no ``search.storage``) the studies stay in memory and are
pickled with the rest, as before.
"""

from __future__ import annotations

import logging
import math
import pickle
from typing import Optional

import optuna
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState
from ray.tune.search import Searcher

from dvdf.atomic import atomic_open
from dvdf.errors import DvdfError
from dvdf.layout import OPTUNA_DB
from dvdf.tune.spec import METRIC, Study, Sweep, default_range, first_points, grid_points, study_seed, trial_config
from dvdf.tune.storage import is_uri

log = logging.getLogger(__name__)

_STATE_VERSION = 2


def optuna_storage_url(sweep: Sweep, location: str) -> Optional[str]:
    """Where the sweep's Optuna studies live: ``search.storage``, else SQLite in the experiment
    directory ``location``; None for a non-Optuna sweep, or one on an object store without
    ``search.storage`` (SQLite needs a file system)."""
    search = sweep.spec.search
    if search.mode != "optuna":
        return None
    if search.storage:
        return search.storage
    if is_uri(location):
        return None
    return f"sqlite:///{location}/{OPTUNA_DB}"


def dashboard_line(sweep: Sweep, location: str) -> str:
    """The line the CLI prints next to TensorBoard's: how to watch the studies (password hidden)."""
    url = optuna_storage_url(sweep, location)
    if url is None:
        if sweep.spec.search.mode != "optuna":
            return f"Optuna: not used (search.mode: {sweep.spec.search.mode})"
        return ("Optuna studies: in memory (an object-store sweep; set search.storage to a database URL "
                "for a dashboard)")
    return f"Optuna dashboard (live): optuna-dashboard {shown_url(url)}"


def shown_url(url: str) -> str:
    """A database URL as it may be printed: the password replaced by ***."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url.split("://", 1)[0] + "://..."


class StudySearcher(Searcher):
    """Dispatches Tune's ``suggest`` calls to per-study Optuna studies or point lists."""

    def __init__(self, sweep: Sweep, metric: str = METRIC, mode: str = "max", storage: Optional[str] = None,
                 resume: bool = False):
        super().__init__(metric=metric, mode=mode)
        self._sweep = sweep
        self._storage = storage
        self._resume = resume
        self._issued: dict[str, int] = {study.name: 0 for study in sweep.studies}
        # Ray trial id -> (study name, Optuna trial number or None, the point's values)
        self._trials: dict[str, tuple[str, Optional[int], dict[str, float]]] = {}
        self._told: set[str] = set()
        self._cursor = 0
        self._samplers: dict[str, optuna.samplers.BaseSampler] = {}
        self._optuna: dict[str, optuna.Study] = {}
        self._rdb: Optional[optuna.storages.RDBStorage] = None   # one connection pool for all studies
        if sweep.spec.search.mode == "optuna":
            optuna.logging.set_verbosity(optuna.logging.WARNING)
            for study in sweep.studies:
                if study.searched:
                    self._samplers[study.name] = self._new_sampler(study)
                    self._optuna[study.name] = self._open_study(study)
                    if resume:   # a resume that found no searcher checkpoint: nothing was handed out
                        self._fail_orphans(study.name)

    # ---------------------------------------------------------------------------------------
    def _new_sampler(self, study: Study) -> optuna.samplers.BaseSampler:
        search = self._sweep.spec.search
        sampler_kwargs = {"seed": study_seed(study.name, search.seed), "constant_liar": True}
        if search.startup_trials is not None:
            sampler_kwargs["n_startup_trials"] = search.startup_trials
        return optuna.samplers.TPESampler(**sampler_kwargs)

    def storage_name(self, study: Study | str) -> str:
        """The Optuna study's name in the storage."""
        name = study if isinstance(study, str) else study.name
        return f"{self._sweep.name}/{name}" if self._sweep.spec.search.storage else name

    def _open_study(self, study: Study) -> optuna.Study:
        """Create the study (first points enqueued) or, when resuming, load it from the storage."""
        name = self.storage_name(study)
        sampler = self._samplers[study.name]
        try:
            if self._storage is not None and self._rdb is None:
                self._rdb = optuna.storages.RDBStorage(self._storage)
            optuna_study = optuna.create_study(direction="maximize", study_name=name, sampler=sampler,
                                               storage=self._rdb, load_if_exists=True)
        except Exception as exc:  # SQLAlchemy: unreachable server, missing driver, bad URL
            raise DvdfError(f"{self._sweep.source}: cannot open Optuna storage {shown_url(self._storage)} "
                            f"for study '{name}': {str(exc).splitlines()[0]}") from None
        existing = optuna_study.get_trials(deepcopy=False)
        if existing and not self._resume:
            raise DvdfError(f"{self._sweep.source}: Optuna storage {shown_url(self._storage)} already holds "
                            f"study '{name}' with {len(existing)} trial(s) (an earlier run of this sweep?); "
                            "continue it with --resume, or use another sweep name or database")
        if not existing:
            for point in first_points(self._sweep.spec.search):
                optuna_study.enqueue_trial({p: getattr(point, p) for p in study.searched})
        return optuna_study

    def _study(self, name: str) -> optuna.Study:
        """The Optuna study of ``name``, reopened from the storage after unpickling."""
        if name not in self._optuna:
            self._optuna[name] = self._open_study(self._sweep.study(name))
            self._fail_orphans(name)
        return self._optuna[name]

    def _fail_orphans(self, name: str) -> None:
        # Trials asked after the last searcher checkpoint of a killed driver were never run by
        # Ray (it re-suggests instead): mark them failed so the dashboard and TPE do not wait.
        known = {number for study, number, _ in self._trials.values() if study == name}
        optuna_study = self._optuna[name]
        for trial in optuna_study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if trial.number not in known:
                optuna_study.tell(trial.number, state=TrialState.FAIL)

    def _distributions(self, study: Study) -> dict[str, FloatDistribution]:
        search = self._sweep.spec.search
        ranges = {p: getattr(search, f"{p}_range") or default_range(p) for p in study.searched}
        return {p: FloatDistribution(float(low), float(high)) for p, (low, high) in ranges.items()}

    # --- Searcher API ------------------------------------------------------------------------
    def set_search_properties(self, metric: Optional[str], mode: Optional[str], config: dict, **spec) -> bool:
        if metric:
            self._metric = metric
        if mode:
            self._mode = mode
        return True

    def suggest(self, trial_id: str) -> Optional[dict]:
        studies = self._sweep.studies
        for _ in range(len(studies)):
            study = studies[self._cursor]
            self._cursor = (self._cursor + 1) % len(studies)
            if self._issued[study.name] < study.num_trials:
                return self._suggest_in(study, trial_id)
        return Searcher.FINISHED

    def _suggest_in(self, study: Study, trial_id: str) -> dict:
        index = self._issued[study.name]
        self._issued[study.name] = index + 1
        number = None
        if study.name in self._samplers:
            optuna_trial = self._study(study.name).ask(self._distributions(study))
            number, point = optuna_trial.number, dict(optuna_trial.params)
        elif study.searched:
            point = grid_points(self._sweep.spec.search, study)[index]
        else:
            point = {}
        self._trials[trial_id] = (study.name, number, point)
        return trial_config(self._sweep, study, point)

    def on_trial_complete(self, trial_id: str, result: Optional[dict] = None, error: bool = False) -> None:
        entry = self._trials.get(trial_id)
        if entry is None or trial_id in self._told:
            return
        name, number, point = entry
        if name not in self._samplers:
            return
        optuna_study = self._study(name)
        value = None if result is None else result.get(self.metric)
        valid = value is not None and math.isfinite(float(value))
        state = optuna_study.get_trials(deepcopy=False)[number].state
        if state == TrialState.RUNNING:
            if valid and not error:
                optuna_study.tell(number, float(value))
                self._told.add(trial_id)
            else:
                optuna_study.tell(number, state=TrialState.FAIL)
        elif state == TrialState.COMPLETE:
            # Told before the driver stopped, after its last searcher checkpoint: already recorded.
            self._told.add(trial_id)
        elif valid and not error:
            # Told FAIL earlier (the trial errored) and has now finished after a resume:
            # record the finished point so the study learns from it.
            optuna_study.add_trial(optuna.trial.create_trial(
                params=point, distributions=self._distributions(self._sweep.study(name)), value=float(value)))
            self._told.add(trial_id)

    # --- state ---------------------------------------------------------------------------------
    @property
    def optuna_studies(self) -> dict[str, optuna.Study]:
        return {name: self._study(name) for name in self._samplers}

    @property
    def storage(self) -> Optional[str]:
        return self._storage

    def issued(self) -> dict[str, int]:
        return dict(self._issued)

    def __getstate__(self) -> dict:
        # Ray pickles the searcher into tuner.pkl: studies in a database are reopened, not copied.
        state = self.__dict__.copy()
        if self._storage is not None:
            state["_optuna"] = {}
            state["_rdb"] = None
        return state

    def __setstate__(self, state: dict) -> None:
        # An unpickled searcher (Tuner.restore reads tuner.pkl) continues a sweep: its studies
        # exist already, even where Ray saved no searcher checkpoint before the stop.
        self.__dict__.update(state)
        self._resume = True

    def save(self, checkpoint_path: str) -> None:
        state = {"version": _STATE_VERSION, "studies": [s.name for s in self._sweep.studies],
                 "issued": self._issued, "trials": self._trials, "told": self._told,
                 "cursor": self._cursor, "samplers": self._samplers, "storage": self._storage,
                 # in memory: the studies themselves; in a database: handles that reconnect to it
                 "optuna": self.optuna_studies}
        with atomic_open(checkpoint_path, "wb") as handle:
            pickle.dump(state, handle)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as handle:
            state = pickle.load(handle)
        names = [s.name for s in self._sweep.studies]
        if state.get("version") != _STATE_VERSION or state["studies"] != names:
            raise RuntimeError(f"searcher state {checkpoint_path} belongs to another sweep definition")
        self._issued = state["issued"]
        self._trials = state["trials"]
        self._told = state["told"]
        self._cursor = state["cursor"]
        self._samplers = state["samplers"]
        self._resume = True
        if state["storage"] is None:         # in-memory studies, pickled whole
            self._optuna = state["optuna"]
        else:                                # reopened from the database on first use
            if self._storage is None:
                self._storage, self._rdb = state["storage"], None
            self._optuna = {}
