"""``dvdf report``: tables, learning curves, filter diagnostics and sensitivity plots of an experiment.

Reads a ``dvdf train`` run directory or a sweep experiment directory (finished, still running, or
with failed trials) and writes a self-contained folder; see :mod:`dvdf.report.build` for its
layout. Modules: ``discover`` (find run and trial directories), ``load`` (read them through
:mod:`dvdf.trials`, the reader ``dvdf sweep --results-only`` shares), ``sweep_info`` (what the
sweep planned), ``stats`` (the three scores, table cells, fixed/tuned), ``reliable`` (IQM, mean,
profiles and P(improvement) with bootstrap CIs, by rliable), ``sensitivity`` (lambda/xi
analysis), ``analysis`` (all of it together), ``tables`` / ``plots`` / ``index`` (the files),
``build`` (the entry point).
"""

from dvdf.report.build import build_report

__all__ = ["build_report"]
