"""Runs: training a spec into a folder, reloading it, evaluating, drawing figures, comparing.

See :mod:`pyro_vi.runs.folder` for what a run folder holds.
"""

from pyro_vi.runs.folder import Run, load_run

__all__ = ["Run", "load_run"]
