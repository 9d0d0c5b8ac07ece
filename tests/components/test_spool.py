"""The spool every variant trains from: one pass, the shared split, streaming."""

import numpy as np
import pytest

from normpipe.components import spool, train
from normpipe.io import ingest
from tests.conftest import read_csv_float64, write_csv

NAMES = ("ts", "fare")


class ZScoreGraph:
    """Stands in for the transform graph: float64 z-scores emitted as float32."""

    def __init__(self, mean, std):
        self.mean, self.std = mean, std

    def __call__(self, columns):
        return {f"{n}_z": ((np.nan_to_num(columns[n], nan=self.mean[j]) - self.mean[j]) / self.std[j]).astype(np.float32)
                for j, n in enumerate(NAMES)}


@pytest.fixture(scope="module")
def spooled(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("spool")
    rng = np.random.default_rng(5)
    n = 3000
    cols = {
        "ts": np.round(1.4e9 + rng.uniform(0, 1e8, n)),  # float32 would round these to 128 s
        "fare": np.where(rng.random(n) < 0.05, np.nan, rng.lognormal(2, 0.5, n)),
        "label": np.where(rng.random(n) < 0.03, np.nan, rng.normal(3, 1, n)),
    }
    path = write_csv(tmp / "d.csv", cols)
    spec = ingest.inspect_input(str(path), None, None, "label", "error")
    raw = read_csv_float64(path, ["ts", "fare", "label"])
    x = np.stack([raw["ts"], raw["fare"]], axis=1)
    mean, std = np.nanmean(x, axis=0), np.nanstd(x, axis=0)
    graph = ZScoreGraph(mean, std)
    rows = spool.spool_splits(spec, graph, [f"{n}_z" for n in NAMES], str(tmp / "chunks"), sample_rows=100)
    # the independent reference: the same split from the parsed CSV
    labelled = ~np.isnan(raw["label"])
    normalized = np.stack(list(graph({"ts": raw["ts"], "fare": raw["fare"]}).values()), axis=1)
    y = raw["label"].astype(np.float32)
    held = train.eval_mask(normalized[labelled], y[labelled])
    expected = {"train": (x[labelled][~held], y[labelled][~held], normalized[labelled][~held]),
                "eval": (x[labelled][held], y[labelled][held], normalized[labelled][held])}
    return rows, expected, mean


def _collect(dataset, key, variant):
    """(x of input `key`, y of output `variant`) over a variant_datasets dataset."""
    xs, ys = zip(*[(x[key].numpy(), y[variant].numpy()) for x, y in dataset])
    return np.concatenate(xs), np.concatenate(ys)


def _sorted_rows(x, y):
    rows = np.concatenate([x.astype(np.float64), y.astype(np.float64)[:, None]], axis=1)
    return rows[np.lexsort(rows.T[::-1])]


def test_split_counts_match_eval_mask_and_labels_missing_are_dropped(spooled):
    rows, expected, _ = spooled
    assert rows.train_rows == len(expected["train"][1]) and rows.eval_rows == len(expected["eval"][1])
    assert rows.train_rows + rows.eval_rows < 3000  # the rows without a label are gone
    assert rows.task == "regression"


def test_train_stream_holds_every_train_row_once_in_float64_and_reshuffles(spooled):
    rows, expected, _ = spooled
    train_data, _, _ = spool.variant_datasets(rows, ["constant"], seed=1)
    dataset = train_data(64)  # iterated once per epoch, as Keras' fit does
    first_x, first_y = _collect(dataset, "raw", "constant")
    second_x, _ = _collect(dataset, "raw", "constant")
    assert first_x.dtype == np.float64
    x, y, _ = expected["train"]
    np.testing.assert_array_equal(_sorted_rows(first_x, first_y), _sorted_rows(x, y))  # NaN sorts last, equal
    assert not np.array_equal(first_x, second_x, equal_nan=True)  # each epoch has its own order
    assert len(first_x) == len(x)
    assert dataset.cardinality().numpy() == -(-len(x) // 64)  # Keras knows an epoch's length


def test_eval_stream_is_in_input_order_and_normalized_stream_holds_the_graph_values(spooled):
    rows, expected, _ = spooled
    _, eval_data, _ = spool.variant_datasets(rows, ["constant"])
    x, y = _collect(eval_data(1000), "raw", "constant")
    np.testing.assert_array_equal(x, expected["eval"][0])
    np.testing.assert_array_equal(y, expected["eval"][1])
    _, eval_normalized, _ = spool.variant_datasets(rows, ["tft"])
    xn, _ = _collect(eval_normalized(7), "normalized", "tft")
    assert xn.dtype == np.float32
    np.testing.assert_array_equal(xn, expected["eval"][2])


def test_batch_variant_stream_fills_missing_values_with_the_mean(spooled):
    rows, expected, mean = spooled
    _, eval_data, _ = spool.variant_datasets(rows, ["batch"], fill_missing=mean)
    x, _ = _collect(eval_data(256), "filled", "batch")
    reference = np.where(np.isnan(expected["eval"][0]), mean, expected["eval"][0])
    assert not np.isnan(x).any()
    np.testing.assert_array_equal(x, reference)


def test_sample_is_the_first_eval_rows_with_a_fixed_size(spooled):
    rows, expected, _ = spooled
    assert len(rows.sample_y) == 100 < rows.eval_rows
    np.testing.assert_array_equal(rows.sample_raw, expected["eval"][0][:100])
    np.testing.assert_array_equal(rows.sample_normalized, expected["eval"][2][:100])
    _x, y = _collect(spool.variant_datasets(rows, ["constant"])[2](1), "raw", "constant")
    assert len(y) == 100


def test_baseline_predicts_the_training_mean(spooled):
    rows, expected, _ = spooled
    constant = expected["train"][1].astype(np.float64).mean()
    figures = spool.baseline(rows, "batch_4096")
    assert figures["metric"] == "mae" and figures["prediction"] == pytest.approx(constant, rel=1e-12)
    eval_y = expected["eval"][1].astype(np.float64)
    assert figures["batch_4096"]["mae"] == pytest.approx(np.abs(eval_y - constant).mean(), rel=1e-9)
    assert figures["batch_1"]["mae"] == pytest.approx(np.abs(eval_y[:100] - constant).mean(), rel=1e-9)
    assert figures["batch_4096"]["rows"] == len(eval_y) and figures["batch_1"]["rows"] == 100


def test_baseline_for_a_binary_label_is_the_majority_class_accuracy(tmp_path):
    rng = np.random.default_rng(9)
    n = 2000
    x = rng.normal(size=n)
    label = (rng.random(n) < 0.3).astype(np.float64)
    rows = spool.Spool(str(tmp_path), 1)
    normalized = x.astype(np.float32)[:, None]
    rows.add(x[:, None], normalized, label.astype(np.float32), sample_rows=50)
    held = train.eval_mask(normalized, label.astype(np.float32))
    figures = spool.baseline(rows, "batch_4096")
    assert rows.task == "classification" and figures["metric"] == "accuracy" and figures["prediction"] == 0.0
    assert figures["batch_4096"]["accuracy"] == pytest.approx((label[held] == 0).mean(), rel=1e-12)


@pytest.mark.parametrize("train_rows", [1, 12_000, 160_000, 800_000, 4_000_000, 10**9])
def test_auto_batch_size_is_a_power_of_two_near_500_steps(train_rows):
    size = train.auto_batch_size(train_rows)
    assert 64 <= size <= 4096 and size & (size - 1) == 0
    if 64 * 500 <= train_rows <= 4096 * 500:
        assert 500 / np.sqrt(2) <= train_rows / size <= 500 * np.sqrt(2)


def test_many_chunks_stream_every_row_once_in_full_batches(tmp_path):
    """Chunks of uneven sizes, more than one window of them and a short last
    window: each train epoch holds every row once, in full batches but the
    last, in its own order and in windows that mix chunks; eval keeps input
    order; every variant's input is the same row."""
    rng = np.random.default_rng(11)
    rows = spool.Spool(str(tmp_path), 2)
    parts = []
    for size in (300, 17, 450, 1, 260, 333, 90, 512, 64, 7, 200):  # 11 chunk pairs: 3 windows of 4
        missing = rng.random(size) < 0.1
        raw = np.stack([1.4e9 + rng.uniform(0, 1e8, size), np.where(missing, np.nan, rng.normal(size=size))], axis=1)
        normalized = rng.normal(size=(size, 2)).astype(np.float32)
        y = rng.normal(size=size).astype(np.float32)
        rows.add(raw, normalized, y, sample_rows=10)
        held = train.eval_mask(normalized, y)
        parts.append((raw[~held], normalized[~held], y[~held], raw[held], y[held]))
    train_raw, train_normalized, train_y, eval_raw, eval_y = (np.concatenate(p) for p in zip(*parts))
    assert len(rows.train_chunks) == 11 and rows.train_rows == len(train_y)
    fill = np.array([0.0, 5.0])
    train_data, eval_data, _ = spool.variant_datasets(rows, ["tft", "constant", "batch"], seed=3, fill_missing=fill)
    dataset = train_data(128)
    orders = []
    for _ in range(2):  # two Keras epochs
        batches = list(dataset)
        sizes = [len(y["tft"]) for _, y in batches]
        assert sizes[:-1] == [128] * (len(sizes) - 1) and 0 < sizes[-1] <= 128 and sum(sizes) == len(train_y)
        assert len(batches) == dataset.cardinality().numpy() == -(-len(train_y) // 128)
        raw = np.concatenate([x["raw"].numpy() for x, _ in batches])
        normalized = np.concatenate([x["normalized"].numpy() for x, _ in batches])
        filled = np.concatenate([x["filled"].numpy() for x, _ in batches])
        y = np.concatenate([y["constant"].numpy() for _, y in batches])
        assert raw.dtype == np.float64 and normalized.dtype == np.float32
        np.testing.assert_array_equal(_sorted_rows(raw, y), _sorted_rows(train_raw, train_y))
        # the inputs of one row belong together
        position = {float(v): i for i, v in enumerate(train_raw[:, 0])}
        index = np.array([position[float(v)] for v in raw[:, 0]])
        np.testing.assert_array_equal(normalized, train_normalized[index])
        np.testing.assert_array_equal(y, train_y[index])
        np.testing.assert_array_equal(filled, np.where(np.isnan(train_raw[index]), fill, train_raw[index]))
        # the first batch mixes rows of several chunks
        chunk_of = np.repeat(np.arange(11), [len(p[2]) for p in parts])
        assert len(set(chunk_of[index[:128]])) > 1
        orders.append(index)
    assert not np.array_equal(orders[0], orders[1])
    x, y = _collect(eval_data(100), "raw", "constant")
    np.testing.assert_array_equal(x, eval_raw)
    np.testing.assert_array_equal(y, eval_y)


@pytest.mark.parametrize("limit", [1, 250, 300, 317, 1000, None])
def test_train_limit_streams_the_first_training_rows_each_epoch(tmp_path, limit):
    """The comparison budget: the first `limit` training rows in input order
    (a chunk cut where the budget ends), every one once per epoch, in a new
    order each epoch; eval is untouched."""
    rng = np.random.default_rng(7)
    rows = spool.Spool(str(tmp_path), 2)
    raws = []
    for size in (300, 17, 450, 90):
        raw = np.stack([np.arange(size) + 1e6 * len(raws), rng.normal(size=size)], axis=1)
        normalized = rng.normal(size=(size, 2)).astype(np.float32)
        y = rng.normal(size=size).astype(np.float32)
        rows.add(raw, normalized, y, sample_rows=10)
        raws.append(raw[~train.eval_mask(normalized, y)])
    every = np.concatenate(raws)
    expected = every[:limit] if limit is not None else every
    train_data, eval_data, _ = spool.variant_datasets(rows, ["learned"], seed=1, train_limit=limit)
    dataset = train_data(64)
    assert dataset.cardinality().numpy() == -(-len(expected) // 64)
    orders = []
    for _ in range(2):
        x, _ = _collect(dataset, "raw", "learned")
        np.testing.assert_array_equal(np.sort(x[:, 0]), np.sort(expected[:, 0]))
        orders.append(x[:, 0])
    assert len(expected) < 2 or not np.array_equal(orders[0], orders[1])
    assert sum(1 for _ in eval_data(64).unbatch()) == rows.eval_rows
