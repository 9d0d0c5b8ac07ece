"""exact_float: power-of-two scaling that survives flush-to-zero; and the
order keys of exact_sums (min and max of the exact statistics)."""

import numpy as np
import pytest
import tensorflow as tf

from normpipe.core import exact_float, exact_sums

TINY = 2.2250738585072014e-308  # smallest normal float64
VALUES = np.array([
    0.0, -0.0, 1e-310, -1e-310, 5e-324, -5e-324, TINY, 1e308, -1e308, np.inf, -np.inf,
    1.0, -1.0, 1e39, -1e39, 1e-39, 3.5, 1.4e9, 1e12 + 0.25,
])


def test_tensorflow_flushes_subnormals_which_is_why_this_module_exists():
    assert tf.reduce_min(tf.constant([1e-310, 3e-310], tf.float64)).numpy() == 0.0


@pytest.mark.parametrize("k", [0, 1, 52, 60, 1000, 1074, -1, -60, -1000])
def test_ldexp_is_exact_whenever_the_result_is_normal(k):
    rng = np.random.default_rng(k % 7)
    values = np.concatenate([VALUES, rng.normal(0, 1, 200) * 10.0 ** rng.integers(-320, 300, 200)])
    got = exact_float.ldexp(tf.constant(values[:, None]), [k]).numpy()[:, 0]
    with np.errstate(over="ignore"):
        want = np.ldexp(values, k)
    normal = (np.abs(want) >= TINY) | (want == 0) | ~np.isfinite(want)
    np.testing.assert_array_equal(got[normal], want[normal])
    # a subnormal result is flushed to zero, never wrong otherwise
    assert np.all((got[~normal] == 0) | (got[~normal] == want[~normal]))


def test_ldexp_keeps_nan_and_scales_each_column_by_its_own_exponent():
    x = tf.constant([[np.nan, 1e-310], [2.0, np.nan]], tf.float64)
    got = exact_float.ldexp(x, [3, 1030]).numpy()
    assert np.isnan(got[0, 0]) and np.isnan(got[1, 1])
    assert got[1, 0] == 16.0 and got[0, 1] == np.ldexp(1e-310, 1030)


def test_order_keys_sort_like_the_floats_and_invert_exactly():
    keys = exact_sums.key_of(VALUES)
    np.testing.assert_array_equal(np.sort(VALUES), VALUES[np.argsort(keys, kind="stable")])
    np.testing.assert_array_equal(exact_sums.from_key(keys).view(np.int64), VALUES.view(np.int64))  # -0.0 too
    lowest, highest = exact_sums.KEY_MIN, exact_sums.KEY_MAX  # where the kernel's min and max start
    assert lowest == keys[-np.inf == VALUES][0] and highest == keys[np.inf == VALUES][0]
    assert lowest > np.iinfo(np.int64).min  # safe to negate


@pytest.mark.parametrize(
    "values, center, expected",
    [
        ([1.0, 2.0, 3.0], 2.0, 0),  # ordinary data is not scaled
        ([1e12, 1e12 + 1], 1e12, 0),
        ([7.0, 7.0], 7.0, 0),  # zero spread
        ([], 0.0, 0),
        ([1e-310, 3e-310], 2e-310, 1029),  # subnormal: scaled up to [0.5, 1)
        ([-1e300, 1e300], 0.0, -997),  # huge: scaled down
        ([-1.7e308, 1.7e308], 0.0, -1024),  # huge, down to [0.5, 1)
        ([-1.7e308, 1.7e308], -1.7e308, -1025),  # x - center overflows float64
    ],
)
def test_choose_exponent(values, center, expected):
    assert exact_float.choose_exponent(np.array(values, np.float64), center) == expected
