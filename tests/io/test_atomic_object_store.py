"""Atomic publishing where a rename is a copy (ram://, as on GCS or S3).

A directory is published by copying it file by file under a marker
(`.normpipe-incomplete`) that is removed last; a copy that fails midway
leaves the marker, and every reader refuses or skips what it marks.
"""

import json
import os
import uuid

import pytest

from normpipe.core.errors import UserError
from normpipe.io import atomic, paths
from normpipe.pipeline import cli
from normpipe.serving import verify


@pytest.fixture
def ram_root():
    root = f"ram://atomic-{uuid.uuid4().hex}"
    yield root
    paths.rmtree(root)


def _source(tmp_path, name, files, broken=None):
    """A local directory with `files` ({relative path: text}); `broken`: a
    dangling symlink's name, which fails the copy when it is reached."""
    folder = tmp_path / name
    for rel, text in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_text(text)
    if broken:
        os.symlink(str(tmp_path / "nowhere"), folder / broken)
    return str(folder)


def _tree(root):
    return {rel: paths.read_text(paths.join(root, rel)) for rel in paths.walk_files(root)}


def test_publish_replaces_a_directory_whole_and_copies_last_files_last(tmp_path, ram_root):
    dst = paths.join(ram_root, "out", "1")
    atomic.publish_directory(_source(tmp_path, "v1", {"saved_model.pb": "1", "variables/v": "1", "old": "1"}), dst)
    atomic.publish_directory(_source(tmp_path, "v2", {"saved_model.pb": "2", "variables/v": "2"}), dst,
                             last=("saved_model.pb",))
    # the old file is gone; the directory lists the files it holds (what --overwrite may replace)
    assert _tree(dst) == {"saved_model.pb": "2", "variables/v": "2", atomic.FILE_LIST: "saved_model.pb\nvariables/v\n"}
    assert atomic.listed_files(dst) == {"saved_model.pb", "variables/v"}
    assert atomic.is_complete(dst)
    atomic.check_complete(dst, "export")


def test_a_copy_that_fails_midway_leaves_nothing_that_looks_complete(tmp_path, ram_root):
    model_dir = paths.join(ram_root, "serving", "m")
    atomic.publish_directory(_source(tmp_path, "v1", {"saved_model.pb": "1"}), paths.join(model_dir, "1"))
    good = _source(tmp_path, "v2", {"assets.extra/a": "2", "saved_model.pb": "2"}, broken="b_broken")
    with pytest.raises(Exception):  # noqa: B017  (whatever the fault injected raises; the test checks what is left)
        atomic.publish_directory(good, paths.join(model_dir, "2"), last=("saved_model.pb",))
    half = paths.join(model_dir, "2")
    assert paths.exists(paths.join(half, "assets.extra", "a"))  # the copy had begun ...
    assert not paths.exists(paths.join(half, "saved_model.pb"))  # ... and TF Serving cannot load it
    assert not atomic.is_complete(half)
    with pytest.raises(UserError, match="incomplete export"):
        atomic.check_complete(half, "export")
    with pytest.raises(UserError, match="incomplete"):
        verify.resolve_version_dir(half)
    assert verify.resolve_version_dir(model_dir) == paths.join(model_dir, "1")


def test_a_failed_republish_marks_the_old_directory_incomplete(tmp_path, ram_root):
    dst = paths.join(ram_root, "out", "transform")
    atomic.publish_directory(_source(tmp_path, "v1", {"a": "1", "z": "1"}), dst)
    with pytest.raises(Exception):  # noqa: B017  (whatever the fault injected raises; the test checks what is left)
        atomic.publish_directory(_source(tmp_path, "v2", {"a": "2", "z": "2"}, broken="m_broken"), dst)
    assert not atomic.is_complete(dst)  # neither the old nor the new contents pass as whole


def test_export_refuses_an_incomplete_transform_output(ram_root, capsys):
    transform_fn = paths.join(ram_root, "transform", "transform_fn")
    paths.makedirs(transform_fn)
    with paths.open(paths.join(transform_fn, "saved_model.pb"), "w") as f:
        f.write("")
    with paths.open(paths.join(ram_root, "transform", atomic.INCOMPLETE), "w") as f:
        f.write("")
    assert cli.main(["export", "--output-dir", ram_root]) == 2
    errors = [l for l in capsys.readouterr().err.splitlines() if l.startswith("normpipe: error:")]
    assert len(errors) == 1 and "incomplete transform output" in errors[0]


def test_atomic_file_on_a_uri_leaves_no_temporary(ram_root):
    path = paths.join(ram_root, "out", "statistics.json")
    atomic.write_json_atomic(path, {"a": 1})
    atomic.write_json_atomic(path, {"a": 2})
    assert json.loads(paths.read_text(path)) == {"a": 2}
    assert paths.listdir(paths.join(ram_root, "out")) == ["statistics.json"]


def test_a_live_lock_on_a_uri_output_refuses_a_second_command(ram_root, capsys):
    import socket

    paths.makedirs(ram_root)
    with paths.open(paths.join(ram_root, ".normpipe.lock"), "w") as f:
        f.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "command": "run"}))
    assert cli.main(["stats", "--input", "ram://nowhere.csv", "--output-dir", ram_root]) == 2
    assert "in use by another normpipe command" in capsys.readouterr().err


def test_input_fn_refuses_examples_of_an_incomplete_copy(tmp_path, ram_root):
    from normpipe.components import dataset  # pylint: disable=import-outside-toplevel

    src = _source(tmp_path, "t", {"part-0.tfrecord.gz": "x", "part-1.tfrecord.gz": "x"}, broken="part-0b")
    with pytest.raises(Exception):  # noqa: B017  (whatever the fault injected raises; the test checks what is left)
        atomic.publish_directory(src, paths.join(ram_root, "transformed"))
    with pytest.raises(ValueError, match="incomplete copy"):
        dataset.input_fn(paths.join(ram_root, "transformed", "part-*"), _TransformOutput(), 8, "y")


class _TransformOutput:
    """What input_fn asks of a tft.TFTransformOutput before it reads the files."""

    def transformed_feature_spec(self):
        import tensorflow as tf  # pylint: disable=import-outside-toplevel

        return {"y": tf.io.FixedLenFeature([], tf.float32)}
