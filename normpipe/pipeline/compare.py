"""`normpipe compare`: per-batch vs full-dataset normalization report."""

import json
import time

import numpy as np

from normpipe.components import compare, compare_report, transform
from normpipe.components.compare import CompareOptions
from normpipe.io import ingest, paths
from normpipe.pipeline.progress import RowRate, progress

# Rows compared are kept in memory between passes up to this many raw cells
# (about 12 bytes each with one method: float64 raw, float32 reference);
# beyond it every pass reads the input and runs the transform graph again.
REPLAY_CELLS = 16 * 2**20


def replayable(batches_fn, max_cells=REPLAY_CELLS):
    """batches_fn whose chunks, once read, are replayed to later passes
    rather than read and transformed again (the comparison makes one pass
    per order), as long as they hold at most `max_cells` raw values."""
    cache, state = [], {"source": None, "done": False, "cells": 0, "overflow": False}

    def batches():
        if state["overflow"]:
            yield from batches_fn()
            return
        position = 0
        while True:
            if position < len(cache):
                position += 1
                yield cache[position - 1]
                continue
            if state["done"]:
                return
            if state["source"] is None:
                state["source"] = iter(batches_fn())
            chunk = next(state["source"], None)
            if chunk is None:
                state["done"] = True
                return
            state["cells"] += chunk[0].size
            if state["cells"] > max_cells:  # too large to keep: this pass reads on, later ones read again
                state["overflow"] = True
                cache.clear()
                yield chunk
                yield from state["source"]
                return
            cache.append(chunk)
            position += 1
            yield chunk

    return batches


def make_batches_fn(spec, graph, methods, rate=None, max_rows=None):
    """Yields (raw, NaN for missing; reference per method), file order, up
    to `max_rows` rows (None: all); counts the rows read on `rate` (a
    RowRate), over every pass."""
    names = {m: compare.output_names(spec.features, m) for m in methods}

    def batches():
        left = max_rows
        for columns in ingest.iter_columns(spec):
            if left is not None:
                if left <= 0:
                    return
                columns = {n: v[:left] for n, v in columns.items()}
                left -= len(next(iter(columns.values())))
            outputs = graph(columns)
            raw = np.stack([columns[n] for n in spec.features], axis=1)
            if rate is not None:
                rate.add(len(raw))
            yield (raw, *(np.stack([outputs[n] for n in names[m]], axis=1) for m in methods))

    return batches


def run_compare(spec, output_dir, method, batch_sizes, seed, transform_dir=None, stats=None):
    """Compares the rows `spec` names and writes the comparison's files in
    `output_dir`; the transform graph and statistics.json are read from
    there, or given (`transform_dir`, a statistics.json document)."""
    start = time.time()
    if stats is None:
        stats = json.loads(paths.read_text(paths.join(output_dir, "statistics.json")))
    graph = transform.TransformGraph(transform_dir or paths.join(output_dir, "transform"))
    methods = list(graph.metadata["methods"]) if method == "both" else [method]
    full = compare.full_statistics(stats, spec.features)
    options = CompareOptions(tuple(batch_sizes), seed)
    rate = RowRate("compare")
    batches_fn = replayable(make_batches_fn(spec, graph, methods, rate, options.max_rows))
    records, probes = compare.run_comparison(batches_fn, methods, list(spec.features), full, options)
    document = {
        "num_examples": stats["num_examples"],
        "rows_compared": min(stats["num_examples"], options.max_rows or stats["num_examples"]),
        "features": list(spec.features),
        "methods": methods,
        "orders": list(compare.ORDERS),
        "batch_sizes": list(options.batch_sizes),
        "seed": seed,
        "records": records,
        "probe": probes,
    }
    compare_report.write_outputs(document, output_dir)
    progress(f"compare: {len(records)} records in {time.time() - start:.1f}s; read {rate.summary()} over "
             f"{len(compare.ORDERS)} orders; wrote comparison.json, comparison.md, comparison.png")
    return document
