"""The bottom layer: user errors and the float64 primitives every stage shares.

  errors           UserError and its one-line marker across Beam workers
  exact_float      exact float64 order keys and power-of-two scaling in graphs
  kernels          the last normalization steps as single TensorFlow kernels
  graph_constants  reading named analyzer results back from a saved graph

May import: nothing of normpipe outside `normpipe.core`.
"""
