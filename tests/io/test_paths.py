"""normpipe.io.paths: the same answers for a local path and a URI (ram://)."""

import os
import uuid

import pytest

from normpipe.io import paths


@pytest.fixture
def ram_root():
    root = f"ram://paths-{uuid.uuid4().hex}"
    yield root
    paths.rmtree(root)


@pytest.mark.parametrize("base, parts, expected", [
    ("gs://bucket/out", ("transform", "transform_fn"), "gs://bucket/out/transform/transform_fn"),
    ("gs://bucket/out/", ("statistics.json",), "gs://bucket/out/statistics.json"),
    ("/tmp/out", ("a", "b"), "/tmp/out/a/b"),
])
def test_join_keeps_the_scheme(base, parts, expected):
    assert paths.join(base, *parts) == expected


def test_dirname_basename_and_absolute_keep_uris():
    assert paths.dirname("gs://bucket/out/statistics.json") == "gs://bucket/out"
    assert paths.dirname("gs://bucket") == "gs://bucket"
    assert paths.basename("s3://b/out/model/") == "model"
    assert paths.absolute("hdfs://nn/x") == "hdfs://nn/x"
    assert paths.absolute("rel") == os.path.join(os.getcwd(), "rel")


@pytest.mark.parametrize("where", ["local", "ram"])
def test_file_operations_agree_on_local_and_ram(where, tmp_path, ram_root):
    root = str(tmp_path) if where == "local" else ram_root
    folder = paths.join(root, "a", "b")
    paths.makedirs(folder)
    with paths.open(paths.join(folder, "x.txt"), "w") as f:
        f.write("héllo")
    assert paths.read_text(paths.join(folder, "x.txt")) == "héllo"
    assert paths.isdir(folder) and paths.isfile(paths.join(folder, "x.txt"))
    paths.copy(paths.join(folder, "x.txt"), paths.join(root, "a", "y.txt"))
    paths.rename(paths.join(root, "a", "y.txt"), paths.join(root, "a", "z.txt"))
    assert sorted(paths.walk_files(paths.join(root, "a"))) == ["b/x.txt", "z.txt"]
    assert paths.glob(paths.join(folder, "*.txt")) == [paths.join(folder, "x.txt")]
    paths.remove(paths.join(root, "a", "z.txt"))
    paths.remove(paths.join(root, "a", "z.txt"))  # a missing file is fine
    paths.rmtree(paths.join(root, "a"))
    assert not paths.exists(paths.join(root, "a", "b", "x.txt"))


def test_temp_dir_on_a_uri_is_unique_and_under_the_parent(ram_root):
    first, second = paths.make_temp_dir(ram_root, ".tmp-"), paths.make_temp_dir(ram_root, ".tmp-")
    assert first != second and first.startswith(ram_root + "/.tmp-") and paths.isdir(first)
    local = paths.local_temp_dir("normpipe-", ram_root)
    try:
        assert paths.is_local(local) and os.path.isdir(local)
    finally:
        os.rmdir(local)
