"""Gradient estimators, losses and targets of "Policy Gradient Algorithms" (Weng, 2018).

Pure functions, one module per family: inputs that carry gradients are
Tensors (log-probabilities, values, actions), held-constant targets (returns,
advantages, TD backups, old log-probabilities) and sampled noise are plain
arrays, so a finite-difference check measures exactly the gradient the
training code uses.  Functions named ``*_objective`` are maximised, ``*_loss``
minimised; each docstring says which equation of the document it implements.

Import from the modules, e.g. ``from minipg.estimators.ppo import clip_objective``.
Each family module imports only the engine (``minipg.autodiff``, ``minipg.nn``,
``minipg.distributions``, ``minipg.kernels``), the input checks of
:mod:`minipg.estimators.checks` and the terms shared by several families in
:mod:`minipg.estimators.terms` (the one-step target, the score-function
surrogate, ...), never another family.  Nothing here imports gymnasium.
"""
