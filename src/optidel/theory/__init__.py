"""Theory of data selection: the paper's teacher-student perceptron experiments and a V-information estimator.

- :mod:`optidel.theory.perceptron`: pool, teacher, probe-based pruning, max-margin student, error.
- :mod:`optidel.theory.replica`: replica saddle-point theory of the pruned max-margin student (Sorscher et al. 2022).
- :mod:`optidel.theory.experiments`: the four experiments, results table and plots (``optidel theory``).
- :mod:`optidel.metrics.vinfo`: V-information (Xu et al. 2020) of a selected set with k-means pseudo-labels
  (``optidel vinfo``).
"""
