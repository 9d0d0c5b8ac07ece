"""Categorical columns' statistics: distinct values, the most frequent ones,
missing values; exact on any runner.

  CountCategories   Beam: canonical record batches -> one JSON object,
                    {column: {"count", "missing", "distinct", "top"}}

Each batch's values are counted with pyarrow (`value_counts`), the counts of
one (column, value) summed across batches and workers by a CombinePerKey, and
each column summarized by a CombineFn that keeps the number of distinct
values, the missing count and the TOP most frequent values (ties: the
smaller value first). Nothing holds more than one column's distinct values
at once on one worker, and the result does not depend on how the data is
split. `count` is the present values; a missing value is an empty text (an
empty cell, a null, an absent feature).
"""

import heapq
import json

import apache_beam as beam
import pyarrow.compute as pc

from normpipe.io import ingest

TOP = 10


def batch_counts(batch, spec):
    """((column, value bytes), count) pairs of one canonical batch."""
    for name, column in ingest.category_columns(batch, spec).items():
        counted = pc.value_counts(column.flatten())
        for value, count in zip(counted.field("values").to_pylist(), counted.field("counts").to_pylist()):
            yield (name, value), count


class _ColumnSummary(beam.CombineFn):
    """(value, count) pairs of one column -> its summary (see the module docstring)."""

    def __init__(self, top=TOP):
        super().__init__()
        self._top = top

    def create_accumulator(self):
        return 0, 0, 0, []  # present, missing, distinct, top [(count, _Descending(value))] as a min-heap

    def add_input(self, accumulator, element):
        present, missing, distinct, top = accumulator
        value, count = element
        if value == b"":
            return present, missing + count, distinct, top
        key = (count, _Descending(value))
        if len(top) < self._top:
            heapq.heappush(top, key)
        elif key > top[0]:
            heapq.heapreplace(top, key)
        return present + count, missing, distinct + 1, top

    def merge_accumulators(self, accumulators):
        present = missing = distinct = 0
        top = []
        for p, m, d, t in accumulators:
            present, missing, distinct = present + p, missing + m, distinct + d
            top.extend(t)
        return present, missing, distinct, heapq.nlargest(self._top, top)

    def extract_output(self, accumulator):
        present, missing, distinct, top = accumulator
        ordered = sorted(top, reverse=True)
        return {"count": present, "missing": missing, "distinct": distinct,
                "top": [[key.value.decode("utf-8", "replace"), count] for count, key in ordered]}


class _Descending:
    """A value ordered in reverse, so that among equal counts the heap keeps
    (and the summary lists first) the smaller value."""

    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value

    def __lt__(self, other):
        return self.value > other.value

    def __eq__(self, other):
        return self.value == other.value

    def __reduce__(self):
        return _Descending, (self.value,)


def _write(summaries, path, columns):
    from apache_beam.io.filesystems import FileSystems  # pylint: disable=import-outside-toplevel

    found = dict(summaries)
    empty = {"count": 0, "missing": 0, "distinct": 0, "top": []}
    document = {name: found.get(name, empty) for name in columns}
    with FileSystems.create(path) as f:
        f.write(json.dumps(document).encode("utf-8"))


def read_counts(path: str) -> dict:
    """What CountCategories wrote ({} when it did not run)."""
    from apache_beam.io.filesystems import FileSystems  # pylint: disable=import-outside-toplevel

    if not FileSystems.exists(path):
        return {}
    with FileSystems.open(path) as f:
        return json.loads(f.read().decode("utf-8"))


class CountCategories(beam.PTransform):
    """Canonical record batches -> the categorical columns' summaries, as
    JSON at `path` (see the module docstring)."""

    def __init__(self, spec, path, top=TOP):
        super().__init__()
        self._spec, self._path, self._top = spec, path, top

    def expand(self, batches):
        spec = self._spec
        return (
            batches
            | "CountPerBatch" >> beam.FlatMap(batch_counts, spec)
            | "SumPerValue" >> beam.CombinePerKey(sum)
            | "KeyByColumn" >> beam.Map(lambda item: (item[0][0], (item[0][1], item[1])))
            | "SummarizeColumns" >> beam.CombinePerKey(_ColumnSummary(self._top))
            | "Collect" >> beam.combiners.ToList()
            | "WriteSummaries" >> beam.Map(_write, self._path, list(spec.categorical))
        )
