"""The files of an export beside its graph: the SavedModel proto's
signatures and method names, the warmup requests, the version directory's
publication and `models.config`.
"""

import os

import numpy as np
import tensorflow as tf

from normpipe.core.errors import UserError
from normpipe.io import atomic, paths
from normpipe.serving.serving_layout import MATRIX_INPUT, existing_versions, is_model_name, sample_limit


def set_method_names(path: str, methods: dict) -> None:
    """Gives signatures TF Serving's method names ({signature: method}).

    TF Serving's Regress and Classify APIs accept only signatures whose
    method name is tensorflow/serving/regress or .../classify; TF2's
    SavedModel writer, which Keras' ExportArchive uses, names every
    signature tensorflow/serving/predict (tensorflow/tensorflow#38081). The
    method name is metadata of the SignatureDef, read by TF Serving and
    ignored by TensorFlow's loaders, so it is set in saved_model.pb itself.
    """
    pb_path = os.path.join(path, "saved_model.pb")
    saved_model = read_saved_model(path)
    changed = False
    for meta_graph in saved_model.meta_graphs:
        for name, method in methods.items():
            if name in meta_graph.signature_def:
                meta_graph.signature_def[name].method_name = method
                changed = True
    if changed:
        with tf.io.gfile.GFile(pb_path + ".tmp", "wb") as f:
            f.write(saved_model.SerializeToString())
        tf.io.gfile.rename(pb_path + ".tmp", pb_path, overwrite=True)


def read_saved_model(path: str):
    """The SavedModel proto of the export at `path` (a version directory)."""
    from tensorflow.core.protobuf import saved_model_pb2  # pylint: disable=import-outside-toplevel

    saved_model = saved_model_pb2.SavedModel()
    saved_model.ParseFromString(paths.read_bytes(paths.join(path, "saved_model.pb")))
    return saved_model


def signature_summary(path: str) -> dict:
    """{signature: {"inputs": {name: "float64 [None]"}, "outputs": {...}}} of
    the `serve` graph, read from saved_model.pb: loading the model would
    trace every signature again, which takes seconds for a wide one."""
    def describe(tensors):
        return {name: f"{tf.as_dtype(info.dtype).name} {[d.size if d.size >= 0 else None for d in info.tensor_shape.dim]}"
                for name, info in sorted(tensors.items())}

    meta_graph = next(m for m in read_saved_model(path).meta_graphs if "serve" in m.meta_info_def.tags)
    return {name: {"inputs": describe(definition.inputs), "outputs": describe(definition.outputs)}
            for name, definition in sorted(meta_graph.signature_def.items())
            if not name.startswith("__")}  # __saved_model_init_op runs at load; it is not served


def write_models_config(serving_root: str, base_path=None) -> str:
    """models.config listing every model directory under serving_root.

    base_path: where the server sees serving_root (e.g. /models in TF
    Serving's container); default: serving_root's absolute local path.
    """
    entries = []
    for name in paths.listdir(serving_root):
        path = paths.join(serving_root, name)
        if paths.isdir(path) and is_model_name(name) and existing_versions(path):
            entries.append(
                "  config {\n"
                f'    name: "{name}"\n'
                f'    base_path: "{base_path.rstrip("/") + "/" + name if base_path else paths.absolute(path)}"\n'
                '    model_platform: "tensorflow"\n'
                "  }\n"
            )
    text = "model_config_list {\n" + "".join(entries) + "}\n"
    config_path = os.path.join(serving_root, "models.config")
    atomic.write_text_atomic(config_path, text)
    return config_path


def publish_version(staging: str, model_dir: str, version=None) -> str:
    """Renames a finished SavedModel into model_dir/<version>, atomically.

    On a URI (object store) it is copied there with `saved_model.pb` last and
    marked complete at the end (atomic.publish_directory); a version number
    is taken by checking that it is free, since a store has no exclusive
    rename.
    """
    # mkdtemp made the staging directory 0700; TF Serving may run as another user.
    atomic.make_public_dir(staging)
    while True:
        number = version if version is not None else max(existing_versions(model_dir), default=0) + 1
        final = paths.join(model_dir, str(number))
        try:
            if paths.is_local(final):
                os.rename(staging, final)  # fails if another export took the number
            elif paths.exists(final):
                raise FileExistsError(final)
            else:
                atomic.publish_directory(staging, final, last=("saved_model.pb",), listed=False)
            return final
        except OSError:
            if version is not None:
                raise UserError(f"{final} already exists; choose another --model-version") from None


def _double_matrix(row) -> "tensor_pb2.TensorProto":  # noqa: F821  (imported in the body: TensorFlow loads late)
    """What tf.make_tensor_proto(row.reshape(1, -1)) gives for a float64 row:
    its bytes as tensor_content, built directly."""
    from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2  # pylint: disable=import-outside-toplevel

    dims = [tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in (1, len(row))]
    return tensor_pb2.TensorProto(dtype=types_pb2.DT_DOUBLE, tensor_shape=tensor_shape_pb2.TensorShapeProto(dim=dims),
                                  tensor_content=np.asarray(row, "<f8").tobytes())


def _double_vector(value) -> "tensor_pb2.TensorProto":  # noqa: F821  (imported in the body: TensorFlow loads late)
    """What tf.make_tensor_proto(np.array([value], np.float64)) gives, built
    directly: a wide model's warmup file with named inputs holds one per
    feature and row, and make_tensor_proto's generality costs ~20x more per
    call."""
    from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2  # pylint: disable=import-outside-toplevel

    return tensor_pb2.TensorProto(
        dtype=types_pb2.DT_DOUBLE,
        tensor_shape=tensor_shape_pb2.TensorShapeProto(dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=1)]),
        double_val=[float(value)],
    )


def write_warmup(path: str, model_name: str, features, rows: np.ndarray, matrix=False, texts=None) -> None:
    """PredictionLog records, one real row per PredictRequest (NaN = missing):
    one DT_DOUBLE [1] input per feature, or with `matrix` one [1, F]
    MATRIX_INPUT; and one DT_STRING [1] per categorical column (`texts`:
    {column: the rows' values})."""
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2  # pylint: disable=import-outside-toplevel

    with tf.io.TFRecordWriter(path) as writer:
        for number, row in enumerate(rows[:sample_limit(len(features))]):
            request = predict_pb2.PredictRequest(
                model_spec=model_pb2.ModelSpec(name=model_name, signature_name="serving_default")
            )
            if matrix:
                request.inputs[MATRIX_INPUT].CopyFrom(_double_matrix(row))
            for name, value in zip(features, row) if not matrix else ():
                request.inputs[name].CopyFrom(_double_vector(value))
            for name, values in (texts or {}).items():
                request.inputs[name].CopyFrom(tf.make_tensor_proto([str(values[number]).encode("utf-8")], tf.string))
            log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString())
