"""`normpipe compare`: per-batch vs full-dataset normalization report."""

import json
import time

import numpy as np

from normpipe.components import atomic, compare, compare_report, ingest, transform
from normpipe.components.compare import CompareOptions
from normpipe.io import paths
from normpipe.pipeline.progress import RowRate, progress


def make_batches_fn(spec, graph, methods, rate=None):
    """Yields (raw, NaN for missing; reference per method), file order;
    counts the rows read on `rate` (a RowRate), over every pass."""
    names = {m: compare.output_names(spec.features, m) for m in methods}

    def batches():
        for columns in ingest.iter_columns(spec):
            outputs = graph(columns)
            raw = np.stack([columns[n] for n in spec.features], axis=1)
            if rate is not None:
                rate.add(len(raw))
            yield (raw, *(np.stack([outputs[n] for n in names[m]], axis=1) for m in methods))

    return batches


def run_compare(spec, output_dir, method, batch_sizes, seed):
    start = time.time()
    stats = json.loads(paths.read_text(paths.join(output_dir, "statistics.json")))
    atomic.check_complete(paths.join(output_dir, "transform"), "transform output")
    graph = transform.TransformGraph(paths.join(output_dir, "transform"))
    methods = list(graph.metadata["methods"]) if method == "both" else [method]
    full = compare.full_statistics(stats, spec.features)
    options = CompareOptions(tuple(batch_sizes), seed)
    rate = RowRate("compare")
    records, probes = compare.run_comparison(make_batches_fn(spec, graph, methods, rate), methods, list(spec.features),
                                             full, options)
    document = {
        "num_examples": stats["num_examples"],
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
