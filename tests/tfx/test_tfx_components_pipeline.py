"""normpipe's TFX components in a real TFX 1.21 pipeline on LocalDagRunner:

CsvExampleGen -> StatisticsGen -> SchemaGen -> Transform(normpipe.tfx.preprocessing_fn)
-> NormalizationComparator -> Trainer(normpipe.tfx.run_fn) -> ServingSkewValidator -> Pusher,

then a second pipeline that gives the validator and Pusher a tampered model:
one trained on this run's transformed examples but exported behind the
transform graph of a second Transform on other rows. Checks: every artifact
in ML Metadata, statistics.json against numpy, the comparison's figures
against `normpipe compare` on the same TFRecords, the blessed model pushed,
the tampered one blessed = 0 and not pushed. And: the pipeline compiles
for Kubeflow Pipelines v2 (where kfp imports).

Skipped, with the reason, where `from tfx import v1` fails (see
test_tfx_pipeline.py), and the Kubeflow test where kfp is not installed;
CI runs them with NORMPIPE_NO_SKIP=tests/tfx, which turns a skip into a
failure (tests/conftest.py).
"""

import csv
import glob
import json
import os
import subprocess
import sys

import pytest

from tests.conftest import assert_stats_close, numpy_stats
from tests.tfx.test_tfx_pipeline import COLUMNS, _split_values, _write_subset, tfx

if tfx is None:
    from tests.tfx.test_tfx_pipeline import _REASON
pytestmark = pytest.mark.skipif(tfx is None, reason=_REASON if tfx is None else "")

FEATURES = [c for c in COLUMNS if c not in ("company", "tips")]
CONFIG = {"label": "tips", "method": "zscore", "epochs": 1, "batch_size": 64}
BATCH_SIZES = [1, 8, 64]
SEED = 3


def _to_directory(serving):
    return tfx.proto.PushDestination(filesystem=tfx.proto.PushDestination.Filesystem(base_directory=serving))


def _examples_and_schema(data_dir):
    """CsvExampleGen -> StatisticsGen -> SchemaGen on the CSV files in `data_dir`."""
    example_gen = tfx.components.CsvExampleGen(input_base=data_dir)
    statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs["examples"])
    schema_gen = tfx.components.SchemaGen(statistics=statistics_gen.outputs["statistics"], infer_feature_shape=True)
    return example_gen, statistics_gen, schema_gen


def _validated_push(example_gen, transform, trainer, serving):
    """ServingSkewValidator on the trainer's model, and Pusher behind its blessing, to `serving`."""
    from normpipe.tfx.components import ServingSkewValidator

    validator = ServingSkewValidator(
        model=trainer.outputs["model"], transform_graph=transform.outputs["transform_graph"],
        examples=example_gen.outputs["examples"], latency_p99_ms=5000.0)
    pusher = tfx.components.Pusher(
        model=trainer.outputs["model"], infra_blessing=validator.outputs["blessing"],
        push_destination=_to_directory(serving))
    return validator, pusher


def _main_components(data_dir, other_dir, serving):
    from normpipe.tfx.components import NormalizationComparator

    example_gen, statistics_gen, schema_gen = _examples_and_schema(data_dir)
    transform = tfx.components.Transform(
        examples=example_gen.outputs["examples"], schema=schema_gen.outputs["schema"],
        preprocessing_fn="normpipe.tfx.preprocessing_fn", custom_config=CONFIG)
    comparator = NormalizationComparator(
        examples=example_gen.outputs["examples"], transform_graph=transform.outputs["transform_graph"],
        batch_sizes=BATCH_SIZES, seed=SEED)
    trainer = tfx.components.Trainer(
        run_fn="normpipe.tfx.run_fn", examples=transform.outputs["transformed_examples"],
        transform_graph=transform.outputs["transform_graph"], schema=schema_gen.outputs["schema"],
        train_args=tfx.proto.TrainArgs(num_steps=50), eval_args=tfx.proto.EvalArgs(num_steps=5),
        custom_config=CONFIG)
    validator, pusher = _validated_push(example_gen, transform, trainer, serving)
    # another run's transform graph: a second Transform, on other rows, numeric only (its vocabulary of
    # `company`, over another train split, would not fit this run's ids: the model could not train)
    other_gen = tfx.components.CsvExampleGen(input_base=other_dir).with_id("OtherCsvExampleGen")
    other_transform = tfx.components.Transform(
        examples=other_gen.outputs["examples"], schema=schema_gen.outputs["schema"],
        preprocessing_fn="normpipe.tfx.preprocessing_fn",
        custom_config={**CONFIG, "categorical": []}).with_id("OtherTransform")
    return [example_gen, statistics_gen, schema_gen, transform, comparator, trainer, validator, pusher, other_gen,
            other_transform]


def _pipeline(name, root, components, db):
    return tfx.dsl.Pipeline(
        pipeline_name=name, pipeline_root=root, components=components,
        metadata_connection_config=None if db is None else tfx.orchestration.metadata.sqlite_metadata_connection_config(db))


def _tampered_components(model_dir, graph_dir, examples_dir, serving):
    from normpipe.tfx.components import ServingSkewValidator

    model = tfx.dsl.Importer(source_uri=model_dir, artifact_type=tfx.types.standard_artifacts.Model).with_id("Model")
    graph = tfx.dsl.Importer(source_uri=graph_dir,
                             artifact_type=tfx.types.standard_artifacts.TransformGraph).with_id("Graph")
    examples = tfx.dsl.Importer(source_uri=examples_dir, artifact_type=tfx.types.standard_artifacts.Examples,
                                properties={"split_names": '["train", "eval"]'}).with_id("Examples")
    validator = ServingSkewValidator(model=model.outputs["result"], transform_graph=graph.outputs["result"],
                                     examples=examples.outputs["result"])
    pusher = tfx.components.Pusher(
        model=model.outputs["result"], infra_blessing=validator.outputs["blessing"],
        push_destination=_to_directory(serving))
    return [model, graph, examples, validator, pusher]


def _newest(root, component, output):
    return sorted(glob.glob(os.path.join(root, component, output, "*")), key=lambda p: int(os.path.basename(p)))[-1]


def _double(cell):
    if not cell:
        return cell
    return str(int(cell) * 2) if cell.lstrip("-").isdigit() else repr(float(cell) * 2)


def _write_other_rows(data_path, directory):
    """Another run's input: the same rows with every number doubled (the same
    columns, types and missing cells, so SchemaGen's schema fits it too)."""
    os.makedirs(directory)
    with open(data_path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    with open(os.path.join(directory, "data.csv"), "w", encoding="utf-8") as out:
        out.write(lines[0] + "\n")
        for line in lines[1:]:
            cells = next(csv.reader([line]))
            cells = [c if name == "company" else _double(c) for name, c in zip(COLUMNS, cells)]
            out.write(",".join(f'"{c}"' if "," in c else c for c in cells) + "\n")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tfx_components")
    data_path = _write_subset(str(tmp / "data"))
    data = os.path.dirname(data_path)
    _write_other_rows(data_path, str(tmp / "other"))
    root, db = str(tmp / "root"), str(tmp / "metadata.db")
    serving, tampered_serving = str(tmp / "serving"), str(tmp / "tampered_serving")
    tfx.orchestration.LocalDagRunner().run(
        _pipeline("normpipe_components", root, _main_components(data, str(tmp / "other"), serving), db))

    import normpipe.tfx

    # The tampered model: this run's transformed examples, the other Transform's graph in front.
    transformed = _newest(root, "Transform", "transformed_examples")
    tampered = str(tmp / "tampered_model")
    normpipe.tfx.run_fn(normpipe.tfx.FnArgs(
        train_files=glob.glob(os.path.join(transformed, "Split-train", "*")),
        eval_files=glob.glob(os.path.join(transformed, "Split-eval", "*")),
        transform_output=_newest(root, "OtherTransform", "transform_graph"),
        serving_model_dir=os.path.join(tampered, "Format-Serving"), custom_config=CONFIG, train_steps=20,
        eval_steps=2))
    tfx.orchestration.LocalDagRunner().run(_pipeline(
        "normpipe_tampered", str(tmp / "root_tampered"),
        _tampered_components(tampered, _newest(root, "Transform", "transform_graph"),
                             _newest(root, "CsvExampleGen", "examples"), tampered_serving), db))
    return {"tmp": tmp, "root": root, "db": db, "serving": serving, "tampered_serving": tampered_serving}


def _store(db):
    from ml_metadata.metadata_store import metadata_store

    return metadata_store.MetadataStore(tfx.orchestration.metadata.sqlite_metadata_connection_config(db))


def _by_context(store, pipeline_name, type_name):
    context = store.get_context_by_type_and_name("pipeline", pipeline_name)
    artifacts = store.get_artifacts_by_context(context.id)
    type_id = store.get_artifact_type(type_name).id
    return [a for a in artifacts if a.type_id == type_id]


@pytest.mark.slow
def test_every_artifact_is_in_ml_metadata(runs):
    store = _store(runs["db"])
    for type_name in ("Examples", "ExampleStatistics", "Schema", "TransformGraph", "normpipe.NormalizationStatistics",
                      "normpipe.NormalizationComparison", "Model", "InfraBlessing", "PushedModel"):
        found = _by_context(store, "normpipe_components", type_name)
        assert found, type_name
        for artifact in found:
            assert artifact.state == artifact.LIVE and os.path.isdir(artifact.uri), (type_name, artifact.uri)
    (statistics,) = _by_context(store, "normpipe_components", "normpipe.NormalizationStatistics")
    (comparison,) = _by_context(store, "normpipe_components", "normpipe.NormalizationComparison")
    assert sorted(os.listdir(statistics.uri)) == ["statistics.json"]
    assert {"comparison.json", "comparison.md", "comparison.png", "comparison.html"} <= set(os.listdir(comparison.uri))


@pytest.mark.slow
def test_statistics_are_those_of_the_train_split(runs):
    import normpipe

    root = runs["root"]
    document = json.loads(open(os.path.join(_newest(root, "NormalizationComparator", "statistics"),
                                            "statistics.json"), encoding="utf-8").read())
    train = _split_values(os.path.join(_newest(root, "CsvExampleGen", "examples"), "Split-train", "*"), FEATURES)
    assert document["num_examples"] == len(train[FEATURES[0]])
    assert document["label"] == "tips" and document["dtype"] == "float64"
    in_graph = normpipe.read_statistics(_newest(root, "Transform", "transform_graph"))
    for name in FEATURES:
        assert_stats_close(document["features"][name], numpy_stats(train[name]))
        assert_stats_close(document["features"][name], in_graph["features"][name])


@pytest.mark.slow
def test_comparison_matches_the_command_line(runs):
    root, tmp = runs["root"], runs["tmp"]
    comparison_dir = _newest(root, "NormalizationComparator", "comparison")
    ours = json.loads(open(os.path.join(comparison_dir, "comparison.json"), encoding="utf-8").read())
    split = os.path.join(_newest(root, "CsvExampleGen", "examples"), "Split-train")
    cli = os.path.join(os.path.dirname(sys.executable), "normpipe")
    out = str(tmp / "cli_compare")
    result = subprocess.run(
        [cli, "compare", "--input", split, "--format", "tfrecord", "--output-dir", out, "--features",
         ",".join(FEATURES), "--label", "tips", "--method", "zscore", "--batch-sizes",
         ",".join(map(str, BATCH_SIZES)), "--seed", str(SEED), "--runner=DirectRunner"],
        capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    theirs = json.loads(open(os.path.join(out, "comparison.json"), encoding="utf-8").read())
    assert ours["num_examples"] == theirs["num_examples"] and ours["batch_sizes"] == BATCH_SIZES
    key = lambda r: (r["feature"], r["method"], r["order"], r["batch_size"])  # noqa: E731
    expected = {key(r): r for r in theirs["records"]}
    assert len(ours["records"]) == len(expected) == len(FEATURES) * 2 * len(BATCH_SIZES)
    for record in ours["records"]:
        other = expected[key(record)]
        assert record["num_values"] == other["num_values"]
        for figure in ("mean_abs_error", "max_abs_error", "batch_mean_spread", "batch_std_spread"):
            assert record[figure] == pytest.approx(other[figure], rel=1e-4, abs=1e-6), (key(record), figure)
    page = open(os.path.join(comparison_dir, "comparison.html"), encoding="utf-8").read()
    assert 'src="data:image/png;base64,' in page  # self-contained: nothing fetched
    assert not any(tag in page for tag in ('src="http', 'href="http', "<script", "<link"))
    assert open(os.path.join(comparison_dir, "comparison.md"), encoding="utf-8").read().startswith("# Per-batch")


def _validation(runs, context):
    """(blessed, the validator's check lines, pushed) of one pipeline run, from its metadata store."""
    store = _store(runs["db"])
    (blessing,) = _by_context(store, context, "InfraBlessing")
    blessed = blessing.custom_properties["blessed"].int_value
    assert os.path.exists(os.path.join(blessing.uri, "INFRA_BLESSED" if blessed else "INFRA_NOT_BLESSED"))
    lines = open(os.path.join(blessing.uri, "checks.txt"), encoding="utf-8").read().splitlines()
    (pushed,) = _by_context(store, context, "PushedModel")
    return blessed, lines, pushed.custom_properties["pushed"].int_value


@pytest.mark.slow
def test_blessed_model_is_pushed(runs):
    blessed, lines, pushed = _validation(runs, "normpipe_components")
    assert blessed == 1
    for check in ("signatures", "warmup", "one_row", "transform_skew", "examples", "latency"):
        assert any(line.startswith(f"PASS {check}:") for line in lines), (check, lines)
    assert pushed == 1
    assert len(glob.glob(os.path.join(runs["serving"], "*", "saved_model.pb"))) == 1


@pytest.mark.slow
def test_tampered_model_is_not_blessed_nor_pushed(runs):
    blessed, lines, pushed = _validation(runs, "normpipe_tampered")
    assert blessed == 0
    assert any(line.startswith("FAIL transform_skew:") for line in lines), lines
    assert any(line.startswith("PASS signatures:") for line in lines), lines  # it is a servable model
    assert pushed == 0
    assert not glob.glob(os.path.join(runs["tampered_serving"], "*"))


def test_pipeline_compiles_for_kubeflow_v2(tmp_path):
    try:
        from tfx.v1.orchestration.experimental import KubeflowV2DagRunner, KubeflowV2DagRunnerConfig
    except Exception as exc:  # pylint: disable=broad-except  -- no kfp here
        pytest.skip(f"KubeflowV2DagRunner needs kfp ({type(exc).__name__}: {str(exc).splitlines()[0][:120]})")
    components = _main_components("gs://bucket/data", "gs://bucket/other", "gs://bucket/serving")
    pipeline = _pipeline("normpipe-components", "gs://bucket/root", components, None)
    KubeflowV2DagRunner(config=KubeflowV2DagRunnerConfig(default_image="normpipe-tfx:latest"),
                        output_dir=str(tmp_path), output_filename="pipeline.json").run(pipeline)
    document = json.loads((tmp_path / "pipeline.json").read_text(encoding="utf-8"))
    spec = document.get("pipelineSpec", document)
    tasks = spec["root"]["dag"]["tasks"]
    assert {"NormalizationComparator", "ServingSkewValidator", "Pusher", "Trainer", "Transform"} <= set(tasks)
    text = json.dumps(spec)
    # custom artifact types are named by the import path the container entry point resolves
    assert "normpipe.NormalizationStatistics" in text and "normpipe.NormalizationComparison" in text
    assert "normpipe.tfx.components.normalization_comparator.executor.Executor" in text
    assert "normpipe.tfx.components.serving_skew_validator.executor.Executor" in text
