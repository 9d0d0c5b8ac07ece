"""The stages: what normpipe computes, each testable alone.

  statistics       AnalyzeStatistics: float64 count, missing, mean, std, min, max
  preprocessing    the tf.Transform graph: TransformOptions, the preprocessing_fn
  categories       categorical columns: a vocabulary per column, its ids
  category_counts  CountCategories: distinct, most frequent and missing values
  transform        its Beam run (AnalyzeAndTransform), the files beside it, the
                   saved graph applied again
  compare          the per-batch recipe against full-dataset normalization
  layers           the Keras 3 layers: per-batch recipe, dataset constants,
                   learned normalization
  dataset          input_fn: transformed TFRecords as a tf.data pipeline
  spool, train     the training rows and the side-by-side variants
  report, compare_report
                   the HTML report and the comparison's table and plot

A stage takes explicit arguments (paths, feature names, small frozen
dataclasses), never the command line's configuration.

May import: `normpipe.core`, `normpipe.io` and `normpipe.components`.
"""
