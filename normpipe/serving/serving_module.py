"""ServingModule: the tf.Transform graph, and optionally a Keras model, as
the functions of an export's signatures (export.py describes them and
writes the SavedModel around them).
"""

import os

import tensorflow as tf

from normpipe.components import categories, transform, user_model
from normpipe.serving import serving_layout as layout
from normpipe.serving.example_parsing import example_types, parse_example_matrix, parse_example_texts
from normpipe.serving.servable_files import set_method_names
from normpipe.serving.serving_layout import CLASSIFY, MATRIX_INPUT, PREDICTION, REGRESS


class ServingModule:
    """The tf.Transform graph, and optionally a Keras model, with signatures.

    `variant` says what the model takes: "tft" -> the graph's outputs
    `model_inputs`; any other -> the raw float64 features. `serving_inputs`:
    "named", "matrix" or "auto" (see the module docstring).
    """

    def __init__(self, transform_dir: str, model=None, variant="tft", model_inputs=None, task=None,
                 serving_inputs="auto", classes=None):
        from tensorflow_transform.saved import saved_transform_io_v2  # pylint: disable=import-outside-toplevel

        if task not in (None, "regression", "classification"):
            raise ValueError(f"task must be 'regression' or 'classification'. Received: {task!r}")
        # What TF Serving's Regress or Classify API may call (with a model only).
        self.task = (task or "regression") if model is not None else None
        # classify's class names in index order (default "0", "1"); more than
        # two: the model's output is [batch, K] probabilities
        self.classes = [str(c) for c in classes] if classes else ["0", "1"]
        self.metadata = transform.read_metadata(transform_dir)
        self.features = list(self.metadata["features"])
        # normpipe's categorical columns (ids `<column>_id` in the graph), then
        # any other text input of a graph of one's own (a TFX preprocessing_fn
        # calling tft.compute_and_apply_vocabulary): each a DT_STRING input
        self.categorical = list(self.metadata.get("categorical") or [])
        self.id_outputs = [categories.id_name(c) for c in self.categorical]
        specs = self.metadata["raw_specs"]
        self.categorical += [n for n in self.metadata["raw_inputs"]
                             if n not in self.categorical and n != self.metadata.get("label")
                             and specs[n]["dtype"] == "string" and "columns" not in specs[n]]
        self.outputs = [o for m in self.metadata["methods"] for o in self.metadata["outputs"][m]]
        self.serving_inputs = layout.serving_inputs_for(serving_inputs, len(self.features))
        self.model = model
        self._variant = variant
        self._model_inputs = list(model_inputs or [])
        # A user model with named inputs takes a dict of [batch, 1] features:
        # normalized ones, or other outputs of a user's preprocessing_fn
        # (`_extra`, e.g. a vocabulary id of a numeric feature).
        self._named = None
        if model is not None and variant == "tft":
            self._named = user_model.input_names(model, self.outputs + _transformed_names(transform_dir))
        self._extra = [n for n in self._named or () if n not in self.outputs]
        # Graphs that emit each method's features as one matrix (normpipe's
        # own) are asked for those matrices only, and the request is given
        # to them as one matrix where the graph takes one: the serving
        # functions then hold a few ops, not several per feature, and the
        # per-feature outputs are one split of the matrix. Graphs without
        # matrices (TFX's, which materialize every output) are asked for
        # their per-feature outputs.
        matrices = self.metadata.get("matrices") or {}
        self._matrices = [matrices[m] for m in self.metadata["methods"]] if all(
            m in matrices for m in self.metadata["methods"]) else None
        # A tft model whose input is one method's features in order reads that
        # method's matrix output.
        self._matrix = None
        if model is not None and variant == "tft" and self._matrices and self._named is None:
            for method, key in zip(self.metadata["methods"], self._matrices):
                if self._model_inputs == list(self.metadata["outputs"][method]):
                    self._matrix = key
        # tf.Transform's own loader (what TransformFeaturesLayer uses), pruned
        # to the features a request carries and the outputs served: the
        # label input is supplied by the loader, and the statistics output,
        # a [batch, 6, F] tile, is not computed per request.
        self._loader = saved_transform_io_v2.SavedModelLoader(os.path.join(transform_dir, "transform_fn"))
        self._inputs = transform.graph_inputs(self.metadata)
        self._inputs += [n for n in self.categorical if n not in self._inputs]
        self._takes_matrix = specs.get(self._inputs[0], {}).get("columns") == self.features
        self._loader.finalize(self._inputs, (self._matrices or self.outputs) + self._extra
                              + [n for n in self.id_outputs if n not in self._extra])
        # The loaded graph owns the variables the pruned function reads;
        # tracking it puts them in the export (as TransformFeaturesLayer does).
        self.transform = self._loader._imported  # pylint: disable=protected-access

    def _columns(self, x) -> dict:
        return dict(zip(self.features, tf.unstack(x, num=len(self.features), axis=1)))

    def _transform(self, x, texts=None) -> dict:
        """The pruned transform graph's outputs for float64 [batch, F] raw
        features and the categorical columns' text ({column: string
        [batch]}, "" = missing), given to the graph in its own input types."""
        texts = texts or {}
        if self._takes_matrix:
            raw = {self._inputs[0]: x}
            if self.categorical:
                raw.update(transform.adapt_inputs(texts, self.metadata["raw_specs"], self.categorical))
        else:
            raw = transform.adapt_inputs({**self._columns(x), **texts}, self.metadata["raw_specs"], self._inputs)
        return self._loader.apply_transform_model(raw)

    def _normalize(self, outputs) -> dict:
        """The graph's outputs -> {normalized feature: float32 [batch]}."""
        if not self._matrices:
            return {name: outputs[name] for name in self.outputs}
        split = {}
        for method, key in zip(self.metadata["methods"], self._matrices):
            names = self.metadata["outputs"][method]
            split.update(zip(names, tf.unstack(outputs[key], num=len(names), axis=1)))
        return split

    def _method_matrices(self, outputs) -> dict:
        """The graph's outputs -> {method: float32 [batch, F]}."""
        methods = self.metadata["methods"]
        if self._matrices:
            return {m: outputs[key] for m, key in zip(methods, self._matrices)}
        normalized = self._normalize(outputs)
        return {m: tf.stack([normalized[n] for n in self.metadata["outputs"][m]], axis=1) for m in methods}

    def _served(self, outputs) -> dict:
        """The normalized features as the signatures return them, and the categorical ids."""
        served = self._method_matrices(outputs) if self.serving_inputs == "matrix" else self._normalize(outputs)
        return {**served, **{name: outputs[name] for name in self.id_outputs}}

    def normalized_features(self, rows, texts=None) -> dict:
        """float64 [n, F] rows (and {column: [n] texts}) -> {output feature:
        [n]} (ids included), whatever the signatures' form."""
        outputs = self._transform(tf.constant(rows, tf.float64), _text_tensors(texts))
        return {**self._normalize(outputs), **{name: outputs[name] for name in self.id_outputs}}

    def predict_rows(self, rows, texts=None):
        """float64 [n, F] rows (and {column: [n] texts}) -> the model's predictions."""
        return self._predict(tf.constant(rows, tf.float64), _text_tensors(texts))[PREDICTION]

    def _ids(self, outputs):
        return tf.stack([tf.cast(outputs[name], tf.int64) for name in self.id_outputs], axis=1)

    def _predict(self, x, texts=None) -> dict:
        outputs = self._transform(x, texts)
        if self.model is None:
            return self._served(outputs)
        takes_ids = len(self.model.inputs) > 1 and self._named is None
        if self._matrix:
            x = outputs[self._matrix]
        elif self._named is not None:
            values = {**{n: outputs[n] for n in self._extra}, **self._normalize(outputs)}
            dtypes = {t.name: t.dtype for t in self.model.inputs}
            x = {n: tf.reshape(tf.cast(values[n], dtypes[n]), [-1, 1]) for n in self._named}
        elif self._variant == "tft":
            normalized = self._normalize(outputs)
            x = tf.stack([normalized[n] for n in self._model_inputs], axis=1)
        prediction = tf.cast(self.model([x, self._ids(outputs)] if takes_ids else x, training=False), tf.float32)
        if self.task == "classification" and len(self.classes) > 2:
            return {PREDICTION: tf.reshape(prediction, [-1, len(self.classes)])}
        if self.task == "classification" and prediction.shape.rank == 2 and prediction.shape[-1] == 2:
            prediction = prediction[:, 1]  # a user model's [batch, 2]: P(class 1)
        return {PREDICTION: tf.reshape(prediction, [-1])}

    def _stack(self, inputs: dict):
        if self.serving_inputs == "matrix":
            return inputs[MATRIX_INPUT]
        return tf.stack([inputs[n] for n in self.features], axis=1)

    def _texts(self, inputs: dict) -> dict:
        return {name: inputs[name] for name in self.categorical}

    def input_specs(self) -> dict:
        """The feature signatures' inputs: one per feature, or the matrix;
        then one DT_STRING [None] per categorical column."""
        if self.serving_inputs == "matrix":
            specs = {MATRIX_INPUT: tf.TensorSpec([None, len(self.features)], tf.float64, name=MATRIX_INPUT)}
        else:
            specs = {name: tf.TensorSpec([None], tf.float64, name=name) for name in self.features}
        specs.update({name: tf.TensorSpec([None], tf.string, name=name) for name in self.categorical})
        return specs

    def output_columns(self) -> dict:
        """{method: its output columns} of the matrices transform_features
        (and serving_default without a model) returns; {} for named signatures."""
        if self.serving_inputs != "matrix":
            return {}
        return {m: list(self.metadata["outputs"][m]) for m in self.metadata["methods"]}

    def normalize(self, inputs: dict) -> dict:
        """Raw float64 features ({feature: [batch]}, or {MATRIX_INPUT: [batch,
        F]}) and categorical text -> the graph's normalized float32 features
        (one matrix per method for matrix signatures) and int64 ids."""
        return self._served(self._transform(self._stack(inputs), self._texts(inputs)))

    def predict(self, inputs: dict) -> dict:
        return self._predict(self._stack(inputs), self._texts(inputs))

    def predict_examples(self, examples) -> dict:
        """Serialized tf.train.Examples -> what `predict` gives for them."""
        kinds = example_types(self.metadata, self.features + self.categorical)
        x = parse_example_matrix(examples, self.features, kinds)
        return self._predict(x, parse_example_texts(examples, self.categorical, kinds))

    def write(self, path: str) -> None:
        """Writes the SavedModel with Keras' ExportArchive.

        ExportArchive lists the Keras 3 model's variables explicitly, which
        the TF1 session loader (TF Serving, saved_model_cli run) needs; the
        transform graph is tracked as a TensorFlow trackable.
        """
        import keras  # pylint: disable=import-outside-toplevel

        specs = self.input_specs()

        archive = keras.export.ExportArchive()
        archive.track(self.transform)
        if self.model is not None:
            archive.track(self.model)
        archive.add_endpoint("transform_features", self.normalize, input_signature=[specs])
        # Without a model serving_default is the normalization: write_out
        # gives the first endpoint that name too, and the one function serves
        # both signatures (a wide one takes seconds to trace; an endpoint of
        # its own would trace it again).
        if self.model is not None:
            archive.add_endpoint("serving_default", self.predict, input_signature=[specs])
        archive.add_endpoint(
            "serving_examples", self.predict_examples, input_signature=[tf.TensorSpec([None], tf.string, name="examples")]
        )
        examples_spec = [tf.TensorSpec([None], tf.string, name="inputs")]
        if self.task == "regression":
            def regress(inputs):
                return {"outputs": self.predict_examples(inputs)[PREDICTION]}

            archive.add_endpoint(REGRESS, regress, input_signature=examples_spec)
        elif self.task == "classification":
            def classify(inputs):
                p = self.predict_examples(inputs)[PREDICTION]
                scores = p if len(self.classes) > 2 else tf.stack([1.0 - p, p], axis=1)
                classes = tf.tile(tf.constant([self.classes]), tf.stack([tf.shape(p)[0], 1]))
                return {"classes": classes, "scores": scores}

            archive.add_endpoint(CLASSIFY, classify, input_signature=examples_spec)
        archive.write_out(path, verbose=False)
        set_method_names(path, {REGRESS: layout.REGRESS_METHOD, CLASSIFY: layout.CLASSIFY_METHOD})


def _text_tensors(texts) -> dict:
    return {name: tf.constant([str(v).encode("utf-8") if not isinstance(v, bytes) else v for v in values], tf.string)
            for name, values in (texts or {}).items()}


def _transformed_names(transform_dir: str) -> list:
    """The transform graph's materialized outputs (transformed_metadata)."""
    import tensorflow_transform as tft  # pylint: disable=import-outside-toplevel

    return sorted(tft.TFTransformOutput(transform_dir).transformed_feature_spec())
