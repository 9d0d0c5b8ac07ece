"""float64 in TensorFlow graphs without flush-to-zero losses.

TensorFlow's CPU kernels run with flush-to-zero and denormals-are-zero set:
an arithmetic op reads a subnormal float64 (0 < |x| < 2.2e-308, e.g. 1e-310)
as 0 and writes a subnormal result as 0, so `tf.reduce_min([1e-310, 3e-310])`
is 0.0. Bit casts, integer ops, `tf.where` and int64 -> float64 casts are
exact, and `ldexp` (x * 2**k, exact whenever the result is a normal
float64, subnormal inputs included) builds on those alone.

Scaling a feature by a power of two moves its values into the normal range
before any arithmetic touches them; a power-of-two scale changes no digit.
No statistic is computed in TensorFlow (see exact_sums.py); the graph's
normalization runs on the scaled values.

TensorFlow is imported by `ldexp` when it is first called:
`choose_exponent` is numpy only, and input inspection uses it without
loading TensorFlow.
"""

import numpy as np

_MAGNITUDE = np.int64(0x7FFFFFFFFFFFFFFF)
_MANTISSA = np.int64((1 << 52) - 1)
_HIDDEN_BIT = np.int64(1 << 52)
_MIN_EXP, _MAX_EXP = -1022, 1023


def _power_of_two(n):
    """2.0**n as float64 for int64 n in [-1022, 1023], built from its bits."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    return tf.bitcast(tf.bitwise.left_shift(n + 1023, 52), tf.float64)


def ldexp(x, exponents):
    """x * 2**exponents for a float64 [batch, F] matrix, one exponent per column.

    x is split into an integer mantissa M < 2**53 and a power of two with
    integer ops, and M (a normal float after the cast) is multiplied by
    powers of two that are normal floats, so no arithmetic op ever sees a
    subnormal input. The result is exact when it is a normal float; a result
    below 2.2e-308 becomes 0 and one beyond float64's range becomes +-inf.
    NaN, +-inf and +-0 are returned unchanged.
    """
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    exponents = np.asarray(exponents, np.int64)
    if not exponents.any():
        # x * 2**0: x itself. Subnormal inputs stay subnormal here (the
        # scaling path returns 0 for them), and the next arithmetic op
        # flushes them to 0 the same way. This keeps some twenty integer
        # ops per request out of the common serving graph.
        return x
    k = tf.constant(exponents)
    bits = tf.bitcast(x, tf.int64)
    magnitude = tf.bitwise.bitwise_and(bits, _MAGNITUDE)
    biased = tf.bitwise.right_shift(magnitude, 52)
    fraction = tf.bitwise.bitwise_and(magnitude, _MANTISSA)
    mantissa = tf.where(biased == 0, fraction, tf.bitwise.bitwise_or(fraction, _HIDDEN_BIT))
    shift = tf.maximum(biased, 1) - 1075 + k
    first = tf.clip_by_value(shift, _MIN_EXP, _MAX_EXP)
    second = tf.clip_by_value(shift - first, _MIN_EXP, _MAX_EXP)
    value = tf.cast(mantissa, tf.float64) * _power_of_two(first) * _power_of_two(second)
    value = tf.where(bits < 0, -value, value)
    unchanged = tf.logical_or(biased == 2047, magnitude == 0)
    return tf.where(unchanged, x, value)


def choose_exponent(values: np.ndarray, center: float) -> int:
    """The power of two that brings a sample's spread near 1, or 0 if unneeded.

    The spread is max |x - center| over the finite sample values. Squares
    of centered values stay normal floats while the spread is within
    2**+-256 (with 2**255 of headroom for later data), so such a feature is
    not scaled and its graph arithmetic is unchanged; outside that range
    (subnormal-scale or 1e100-scale data) it is scaled to [0.5, 1).
    """
    values = values[np.isfinite(values)]
    if not values.size:
        return 0
    with np.errstate(over="ignore"):
        spread = float(np.max(np.abs(values - center)))
    if spread == 0 or 2.0**-256 <= spread <= 2.0**256:
        return 0
    if not np.isfinite(spread):
        return -(np.frexp(float(np.max(np.abs(values))))[1] + 1)
    return -int(np.frexp(spread)[1])
