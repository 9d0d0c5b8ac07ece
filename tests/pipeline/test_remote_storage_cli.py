"""The CLI with --input and --output-dir on a non-local scheme, end to end.

- `ram://`: TensorFlow's in-memory filesystem, served to Beam by
  tests/io/ramfs.py. Like an object store it cannot rename a directory, so
  it exercises the copy-and-mark publishing. It is per process, so the
  commands run in this process (DirectRunner's in-process engine).
- `gs://`: Beam's GCS client against gcp-storage-emulator on 127.0.0.1
  (STORAGE_EMULATOR_HOST), for the input, which only Beam reads; TensorFlow's
  own GCS filesystem cannot be pointed at an emulator, so outputs stay local.

Each result is compared with the same command on local paths: statistics
bit for bit, transformed examples and recorded samples parsed back.
"""

import gc
import json
import os
import uuid

import numpy as np
import pytest
import tensorflow as tf

from normpipe.io import paths
from normpipe.pipeline import cli
from tests.conftest import write_csv
from tests.io import ramfs

pytestmark = pytest.mark.slow


def main(args) -> int:
    try:
        return cli.main(args)
    finally:
        gc.unfreeze()  # main() freezes the heap for a fast exit; a test process goes on


@pytest.fixture(scope="module")
def data_csv(tmp_path_factory):
    rng = np.random.default_rng(3)
    n = 3000
    x = rng.normal(10, 3, n)
    wide = 1e6 + rng.normal(0, 1e-2, n)
    sparse = np.where(rng.random(n) < 0.3, np.nan, rng.uniform(-5, 5, n))
    y = 2 * x + np.nan_to_num(sparse) + rng.normal(0, 0.1, n)
    return write_csv(str(tmp_path_factory.mktemp("data") / "d.csv"),
                     {"x": x, "wide": wide, "sparse": sparse, "y": y})


@pytest.fixture
def ram_root():
    root = f"ram://e2e-{uuid.uuid4().hex}"
    yield root
    paths.rmtree(root)


@pytest.fixture(scope="module")
def local_transform(data_csv, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("local") / "t")
    assert main(["transform", "--input", data_csv, "--output-dir", out, "--method", "both"]) == 0
    return out


@pytest.fixture(scope="module")
def local_stats(data_csv, tmp_path_factory):
    """`normpipe stats` on the local file: its numpy engine's statistics, to
    compare bit for bit with the same engine's on a URI (`transform`'s
    tf.Transform analyzers agree with them to about 1e-16, not to the bit)."""
    out = str(tmp_path_factory.mktemp("local") / "s")
    assert main(["stats", "--input", data_csv, "--output-dir", out]) == 0
    return _json(os.path.join(out, "statistics.json"))


def _json(path):
    return json.loads(paths.read_text(path))


def _same_statistics(a: dict, b: dict):
    assert a["num_examples"] == b["num_examples"]
    assert a["features"] == b["features"]  # floats compared exactly: bit for bit


def _examples(directory):
    """The transformed tf.Examples, parsed: sorted ((feature, values), ...) per example."""
    files = paths.glob(paths.join(directory, "part-*"))
    assert files
    parsed = (tf.train.Example.FromString(r.numpy()) for r in tf.data.TFRecordDataset(files, compression_type="GZIP"))
    return sorted(tuple(sorted((k, tuple(v.float_list.value)) for k, v in e.features.feature.items())) for e in parsed)


def test_stats_and_transform_on_ram_equal_a_local_run(data_csv, local_transform, local_stats, ram_root):
    source = ramfs.copy_to_ram(data_csv, f"{ram_root}/in/d.csv")
    out = f"{ram_root}/out"
    assert main(["stats", "--input", source, "--output-dir", f"{out}/s"]) == 0
    assert main(["transform", "--input", source, "--output-dir", f"{out}/t", "--method", "both"]) == 0
    local = _json(os.path.join(local_transform, "statistics.json"))
    _same_statistics(_json(f"{out}/s/statistics.json"), local_stats)
    _same_statistics(_json(f"{out}/t/statistics.json"), local)
    assert _json(f"{out}/t/statistics.json")["input"]["files"] == [source]
    assert _examples(f"{out}/t/transformed") == _examples(os.path.join(local_transform, "transformed"))
    for name in ("normpipe_sample.json", "normpipe_transform.json"):
        assert _json(f"{out}/t/transform/{name}") == _json(os.path.join(local_transform, "transform", name))
    assert tf.io.gfile.exists(f"{out}/t/transform/transform_fn/saved_model.pb")
    # no lock, scratch, temporary or incomplete marker is left behind
    assert paths.listdir(f"{out}/t") == ["statistics.json", "transform", "transformed"]
    assert not paths.exists(f"{out}/t/transform/.normpipe-incomplete")


def _split(record):
    """(its text fields, its numbers with None as NaN) of a comparison record."""
    text = {k: v for k, v in record.items() if isinstance(v, str)}
    return text, {k: np.nan if v is None else v for k, v in record.items() if k not in text}


def test_run_on_ram_writes_every_output_and_the_export_verifies(data_csv, tmp_path, ram_root):
    source = ramfs.copy_to_ram(data_csv, f"{ram_root}/in/d.csv")
    out = f"{ram_root}/out"
    common = ["--label", "y", "--epochs", "1", "--no-all-variants", "--model-name", "m"]
    assert main(["run", "--input", data_csv, "--output-dir", str(tmp_path / "r"), *common]) == 0
    # `run` verifies the export in a fresh process, which cannot see this
    # process's ram:// (exit 1, "verify: FAILED"); every other stage succeeds.
    assert main(["run", "--input", source, "--output-dir", out, *common]) == 1
    for name in ("statistics.json", "comparison.json", "comparison.md", "comparison.png", "report.html",
                 "run.json", "model/model.keras", "model/metrics.json", "serving/models.config",
                 "serving/m/1/saved_model.pb", "serving/m/1/assets.extra/tf_serving_warmup_requests"):
        assert paths.exists(f"{out}/{name}"), name
    local = str(tmp_path / "r")
    _same_statistics(_json(f"{out}/statistics.json"), _json(os.path.join(local, "statistics.json")))
    # In file order the per-batch errors match (float32 reductions: to 1e-6).
    # The shuffled order is left out: tf.data's seeded shuffle also depends on
    # TensorFlow's global seed, which the first run's training set in this process.
    expected = [r for r in _json(os.path.join(local, "comparison.json"))["records"] if r["order"] == "file"]
    actual = [r for r in _json(f"{out}/comparison.json")["records"] if r["order"] == "file"]
    assert expected
    assert [_split(r)[0] for r in actual] == [_split(r)[0] for r in expected]
    assert [_split(r)[1] for r in actual] == [pytest.approx(_split(r)[1], rel=1e-6, abs=1e-9) for r in expected]
    assert _json(f"{out}/run.json")["input"]["sha256"] == _json(os.path.join(local, "run.json"))["input"]["sha256"]
    assert paths.read_bytes(f"{out}/comparison.png")[:8] == b"\x89PNG\r\n\x1a\n"
    # the same export, verified in this process: all six checks pass
    assert main(["verify", "--model-dir", f"{out}/serving/m"]) == 0


@pytest.fixture(scope="module")
def gcs_emulator():
    pytest.importorskip("gcp_storage_emulator", reason="gcp-storage-emulator is not installed (pip install '.[test]')")
    from gcp_storage_emulator.server import create_server  # pylint: disable=import-outside-toplevel

    from tests.conftest import free_port  # pylint: disable=import-outside-toplevel

    port = free_port()
    server = create_server("127.0.0.1", port, in_memory=True, default_bucket="bucket")
    server.start()
    previous = os.environ.get("STORAGE_EMULATOR_HOST")
    os.environ["STORAGE_EMULATOR_HOST"] = f"http://127.0.0.1:{port}"
    yield "gs://bucket"
    server.stop()
    if previous is None:
        os.environ.pop("STORAGE_EMULATOR_HOST", None)
    else:
        os.environ["STORAGE_EMULATOR_HOST"] = previous


def _upload(local_path, uri):
    from apache_beam.io.filesystems import FileSystems  # pylint: disable=import-outside-toplevel

    with open(local_path, "rb") as src, FileSystems.create(uri) as dst:
        dst.write(src.read())
    return uri


def test_gcs_input_through_beam_equals_a_local_run(data_csv, local_transform, local_stats, gcs_emulator, tmp_path,
                                                   capsys):
    source = _upload(data_csv, f"{gcs_emulator}/in/d.csv")
    assert main(["stats", "--input", source, "--output-dir", str(tmp_path / "s")]) == 0
    assert main(["stats", "--input", f"{gcs_emulator}/in/", "--output-dir", str(tmp_path / "dir")]) == 0
    assert main(["transform", "--input", source, "--output-dir", str(tmp_path / "t"), "--method", "both"]) == 0
    local = _json(os.path.join(local_transform, "statistics.json"))
    for out, reference in (("s", local_stats), ("dir", local_stats), ("t", local)):
        document = _json(str(tmp_path / out / "statistics.json"))
        _same_statistics(document, reference)
        assert document["input"]["files"] == [source]
    assert _examples(str(tmp_path / "t" / "transformed")) == _examples(os.path.join(local_transform, "transformed"))
    capsys.readouterr()
    assert main(["stats", "--input", f"{gcs_emulator}/missing.csv", "--output-dir", str(tmp_path / "m")]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"normpipe: error: {gcs_emulator}/missing.csv: no such file, or no file matches")
