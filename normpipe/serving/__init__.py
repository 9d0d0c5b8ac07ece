"""The TF Serving contract: what is exported, what lies beside it, how it is checked.

  export           the SavedModel: transform graph (and model) with signatures
  serving_module   ServingModule: the functions behind those signatures
  sample_rows      the rows of the warmup requests and the verify sample
  example_parsing  serialized tf.Example -> features, by their data types
  servable_files   method names, warmup requests, version publishing,
                   models.config
  serving_layout   the version directory layout and the names requests use
  verify           the export loaded as TF Serving loads it, checked for skew
  serving_client   the REST client of `normpipe predict`

May import: `normpipe.core`, `normpipe.io`, `normpipe.components` and
`normpipe.serving`.
"""
