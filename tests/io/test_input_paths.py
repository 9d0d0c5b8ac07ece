"""An input that exists is that file, even when its name holds `*`, `?` or `[`;
a pattern is a pattern only when no such file exists. Local and URI (ram://)."""

import uuid

import pytest

import tests.io.ramfs  # noqa: F401  (registers ram:// with Beam's FileSystems)
from normpipe.core.errors import UserError
from normpipe.io import ingest, paths
from normpipe.serving import serving_client

# Each literal name beside a file that the same text, read as a pattern, matches.
LITERAL_AND_DECOY = [("data[1].csv", "data1.csv"), ("run*.csv", "run_a.csv"), ("day?.csv", "day1.csv")]


@pytest.fixture(params=["local", "ram"])
def root(request, tmp_path):
    if request.param == "local":
        yield str(tmp_path)
        return
    uri = f"ram://input-paths-{uuid.uuid4().hex}"
    paths.makedirs(uri)
    yield uri
    paths.rmtree(uri)


def write(path: str, rows: int) -> str:
    with paths.open(path, "w") as f:
        f.write("a,b\n" + "".join(f"{i},{2 * i}\n" for i in range(rows)))
    return path


@pytest.mark.parametrize("literal, decoy", LITERAL_AND_DECOY)
def test_existing_file_with_glob_characters_is_that_file(root, literal, decoy):
    path = write(paths.join(root, literal), 3)
    write(paths.join(root, decoy), 5)
    assert ingest.expand_input(path) == (path,)
    assert ingest.inspect_input(path).files == (path,)


@pytest.mark.parametrize("literal, decoy", LITERAL_AND_DECOY)
def test_pattern_without_such_a_file_is_still_a_pattern(root, literal, decoy):
    write(paths.join(root, decoy), 5)
    assert ingest.expand_input(paths.join(root, literal)) == (paths.join(root, decoy),)


def test_pattern_that_matches_nothing_is_one_error(root):
    with pytest.raises(UserError, match=r"no file matches|matches no files"):
        ingest.expand_input(paths.join(root, "none[12].csv"))


def test_predict_reads_an_input_with_glob_characters(root):
    path = write(paths.join(root, "rows[1].csv"), 2)
    write(paths.join(root, "rows1.csv"), 7)
    rows = serving_client.read_rows(path, ["a", "b"])
    assert [(r["a"], r["b"]) for r in rows] == [(0.0, 0.0), (1.0, 2.0)]
