"""Notebook 07, the capstone: write your own socketserver; CPython's test suite grades it.

``skeleton.py`` is the module to fill in (the notebook copies it into the reader's own
folder), ``reference.py`` one way to fill it in, ``grader.py`` the grader, ``variants.py``
partly filled and deliberately broken modules to grade, ``workbench.py`` the reader's
copy.  Neither the skeleton nor the reference imports minisocket: each is a whole
socketserver on its own.  ``import minisocket`` loads none of this.
"""

from .grader import LAYERS, SKELETON, TESTS, Check, Outcome, Report, grade, layer_map
from .variants import BROKEN, REFERENCE, broken, diff, filled
from .workbench import copy_skeleton, outline, source, start_over

__all__ = [
    "BROKEN",
    "LAYERS",
    "REFERENCE",
    "SKELETON",
    "TESTS",
    "Check",
    "Outcome",
    "Report",
    "broken",
    "copy_skeleton",
    "diff",
    "filled",
    "grade",
    "layer_map",
    "outline",
    "source",
    "start_over",
]
