"""Notebook 07, the capstone: write your own socketserver; CPython's test suite grades it.

``skeleton.py`` is the module to fill in (the notebook copies it into your own folder),
``reference.py`` one way to fill it in, ``grader.py`` the grader.  Neither the skeleton
nor the reference imports minisocket: each is a whole socketserver on its own.
"""
