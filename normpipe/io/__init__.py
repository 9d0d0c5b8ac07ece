"""Where data lives and how it is read: paths, publishing, the readers.

  paths            paths that may be URIs (local via os, URIs via tf.io.gfile,
                   inputs via Beam FileSystems)
  atomic           publishing an output whole or not at all, locally and on
                   object stores
  input_files      which files an --input names: an existing file as it is,
                   else a directory or a pattern
  input_spec       what to read: the input spec, format detection,
                   bad-value policy
  column_roles     which column is a feature, the label, a category, or
                   left alone
  ingest           ReadRecordBatches: the Beam source for every format
  csv_reader, csv_lines, csv_values, parquet_reader, tfrecord_reader,
  column_names     the readers and the names they accept

May import: `normpipe.core` and `normpipe.io`.
"""
