"""Named tensors of a saved tf.Transform graph that depend on no input.

tf.Transform offers no public way to read an analyzer result back from a
saved transform_fn other than as an output of the graph, and an output is
materialized into every transformed example (and, under TFX, into the
transformed schema). normpipe's preprocessing_fn therefore names the tensors
it wants to keep (statistics.STATISTICS_NODE, statistics.CONFIG_NODE) and
ties them to its outputs with control dependencies; this module finds them
in the loaded function's graph and evaluates them.

In a saved transform_fn, tf.Transform's analyzer results are captured
constants of the function: placeholders inside its graph, fed from the
function's captured inputs. They are fed the same way here. This relies on
`ConcreteFunction.graph` and `FuncGraph.captures`, which tf.Transform's own
loader relies on too; tests/core/test_graph_constants.py fails loudly
if a TensorFlow or tf.Transform upgrade changes either.
"""

import tensorflow as tf

from normpipe.core.errors import UserError


def read(transform_fn, names, source="the transform graph") -> dict:
    """{name: numpy value} of the named tensors (output 0 of each op) of a
    loaded transform_fn (statistics.load_transform_graph(...).transform_fn);
    `source` names it in errors."""
    graph = transform_fn.graph
    missing = [n for n in names if n not in {op.name for op in graph.get_operations()}]
    if missing:
        raise UserError(
            f"{source}: no {', '.join(missing)} in the transform graph; it was not made by "
            "normpipe's preprocessing_fn (normpipe.tfx.preprocessing_fn or `normpipe transform`)"
        )
    feeds = {}
    for external, internal in graph.captures:
        if external.dtype != tf.resource and hasattr(external, "numpy"):
            feeds[internal.name] = external.numpy()
    fetches = [graph.get_operation_by_name(n).outputs[0] for n in names]
    with tf.compat.v1.Session(graph=graph) as session:
        values = session.run(fetches, feed_dict=feeds)
    return dict(zip(names, values))
