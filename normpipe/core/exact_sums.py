"""Exact sums of float64 values and of their squares, mergeable in any order.

Every finite float64 is an integer multiple of 2**-1074, and its square one
of 2**-2148, so sums of values and of squares are integers in those units:
up to ~2,100 and ~4,200 bits, which Python's integers hold exactly. Adding
them is associative and commutative, so partial sums computed on any split
of the rows, merged in any order, give the same integers: the same bits for
every partitioning, batch size, runner and input format.

Per value, Python integers would cost ~1 µs; the hot loop is a compiled
numba kernel (numpy has no exact accumulation, and a vectorized numpy
version measured ~30 array passes per value, several times the cost of
parsing the CSV). It keeps, per feature and per binary exponent e of the
values, int64 bins (a "small superaccumulator", Neal 2015,
arXiv:1505.05571): a value m * 2**(e-1075) (m its 53-bit integer
significand) adds m's two halves to the exponent's bins, and its exact
square m**2 * 2**(2e-2150), m**2 split into 27-bit pieces, adds five more.
Every addend is below 2**28, so a bin holds 2**35 values before it could
overflow; `Accumulator.flush` folds the bins into the Python integers long
before that, and before an accumulator is pickled (so what crosses a
runner's shuffle is a few hundred bytes per feature, not the bins).

Min and max are taken over int64 keys that sort like the floats (-0.0 just
below +0.0), so they are exact and order-free too. NaN is missing; an
infinite value is counted apart (`infinite`) and left out of the sums.
"""

import math

import numpy as np

_BINS = 2048  # biased exponents; 0 (zero, subnormal) is used as 1
_SLOTS = 8  # per bin: significand high and low halves, five square pieces, one unused
_MASK26 = (1 << 26) - 1
_MASK27 = (1 << 27) - 1
_MANTISSA = (1 << 52) - 1
_HIDDEN = 1 << 52
_MAGNITUDE = 0x7FFFFFFFFFFFFFFF
# a bin takes at most 2**35 addends below 2**28: fold well before that
FLUSH_EVERY = 1 << 33
_kernel = None


def key_of(values) -> np.ndarray:
    """int64 keys ordered like the float64 `values` (NaN excluded), as the
    kernel computes them: a non-negative float's bits already sort as
    integers; a negative float's bits sort backwards, so all but the sign
    bit are flipped (-0.0 just below +0.0). The map is its own inverse."""
    bits = np.asarray(values, np.float64).view(np.int64)
    return np.where(bits < 0, bits ^ np.int64(_MAGNITUDE), bits)


def from_key(keys) -> np.ndarray:
    """The float64 values of order keys."""
    keys = np.asarray(keys, np.int64)
    return np.where(keys < 0, keys ^ np.int64(_MAGNITUDE), keys).view(np.float64)


# where min and max start: the keys of +inf and -inf
KEY_MAX, KEY_MIN = key_of([np.inf, -np.inf])


def _compile():
    """The numba kernel, compiled on first use (cached on disk by numba)."""
    global _kernel  # pylint: disable=global-statement
    if _kernel is None:
        import numba  # pylint: disable=import-outside-toplevel

        def accumulate(bits, bins, counts, keys):  # pragma: no cover - compiled
            width, rows = bits.shape
            for f in range(width):
                present = 0
                missing = 0
                infinite = 0
                low = keys[f, 0]
                high = keys[f, 1]
                for i in range(rows):
                    b = bits[f, i]
                    magnitude = b & _MAGNITUDE
                    e = magnitude >> 52
                    if e == 2047:
                        if magnitude & _MANTISSA:
                            missing += 1
                        else:
                            infinite += 1
                        continue
                    present += 1
                    key = b ^ _MAGNITUDE if b < 0 else b
                    if key < low:
                        low = key
                    if key > high:
                        high = key
                    m = magnitude & _MANTISSA
                    if e == 0:
                        if m == 0:
                            continue
                        e = 1
                    else:
                        m |= _HIDDEN
                    hi = m >> 26  # < 2**27
                    lo = m & _MASK26  # < 2**26
                    if b < 0:
                        bins[f, e, 0] -= hi
                        bins[f, e, 1] -= lo
                    else:
                        bins[f, e, 0] += hi
                        bins[f, e, 1] += lo
                    # m**2 = hi**2 * 2**52 + 2 hi lo * 2**26 + lo**2, in pieces below 2**28
                    hh = hi * hi
                    hl = 2 * hi * lo
                    ll = lo * lo
                    bins[f, e, 2] += ll & _MASK26  # at 2**0
                    bins[f, e, 3] += (ll >> 26) + (hl & _MASK27)  # at 2**26
                    bins[f, e, 4] += hh & _MASK27  # at 2**52
                    bins[f, e, 5] += hl >> 27  # at 2**53
                    bins[f, e, 6] += hh >> 27  # at 2**79
                counts[f, 0] += present
                counts[f, 1] += missing
                counts[f, 2] += infinite
                keys[f, 0] = low
                keys[f, 1] = high

        try:
            _kernel = numba.njit(cache=True, nogil=True)(accumulate)
        except RuntimeError:  # "cannot cache function": no writable place for numba's cache
            _kernel = numba.njit(nogil=True)(accumulate)
    return _kernel


class Accumulator:
    """Exact partial statistics of some rows of `width` features.

    `counts[f]` = (present, missing, infinite); `keys[f]` = (min, max) as
    order keys; `sums[f]` = sum of the present finite values in units of
    2**-1074 and `squares[f]` = sum of their squares in units of 2**-2148,
    as Python integers, plus what the bins hold until `flush`.
    """

    __slots__ = ("bins", "counts", "keys", "pending", "squares", "sums", "width")

    def __init__(self, width: int):
        self.width = width
        self.counts = np.zeros((width, 3), np.int64)
        self.keys = np.empty((width, 2), np.int64)
        self.keys[:, 0] = KEY_MAX
        self.keys[:, 1] = KEY_MIN
        self.sums = [0] * width
        self.squares = [0] * width
        self.bins = None
        self.pending = 0

    def add(self, values: np.ndarray) -> "Accumulator":
        """Adds a float64 [F, n] array (one row per feature, NaN = missing)."""
        values = np.ascontiguousarray(values, np.float64)
        if values.ndim != 2 or values.shape[0] != self.width:
            raise ValueError(f"values must be float64 [{self.width}, n]. Received: shape {values.shape}")
        if self.pending + values.shape[1] > FLUSH_EVERY:
            self.flush()
        if self.bins is None:
            self.bins = np.zeros((self.width, _BINS, _SLOTS), np.int64)
        _compile()(values.view(np.int64), self.bins, self.counts, self.keys)
        self.pending += values.shape[1]
        return self

    def flush(self) -> None:
        """Folds the bins into the Python integers and drops them."""
        if self.bins is None:
            return
        for f in range(self.width):
            used = np.flatnonzero(self.bins[f].any(axis=1))
            s1, s2 = self.sums[f], self.squares[f]
            for e, row in zip(used.tolist(), self.bins[f, used].tolist()):
                s1 += ((row[0] << 26) + row[1]) << (e - 1)
                s2 += (row[2] + (row[3] << 26) + (row[4] << 52) + (row[5] << 53) + (row[6] << 79)) << (2 * e - 2)
            self.sums[f], self.squares[f] = s1, s2
        self.bins = None
        self.pending = 0

    def merge(self, other: "Accumulator") -> "Accumulator":
        """Adds `other`'s rows to this accumulator."""
        if other.width != self.width:
            raise ValueError(f"cannot merge statistics of {other.width} features into {self.width}")
        self.flush()
        other.flush()
        self.counts += other.counts
        self.keys[:, 0] = np.minimum(self.keys[:, 0], other.keys[:, 0])
        self.keys[:, 1] = np.maximum(self.keys[:, 1], other.keys[:, 1])
        self.sums = [a + b for a, b in zip(self.sums, other.sums)]
        self.squares = [a + b for a, b in zip(self.squares, other.squares)]
        return self

    def __getstate__(self):
        self.flush()
        return {"width": self.width, "counts": self.counts, "keys": self.keys, "sums": self.sums,
                "squares": self.squares}

    def __setstate__(self, state):
        for name, value in state.items():
            setattr(self, name, value)
        self.bins = None
        self.pending = 0


def divide(numerator: int, denominator: int) -> float:
    """numerator / denominator rounded once to float64 (+-inf beyond its range).

    CPython's int / int true division is correctly rounded (round half to
    even), subnormal results included; it raises OverflowError beyond float64.
    """
    try:
        return numerator / denominator
    except OverflowError:
        return float("inf") if (numerator < 0) == (denominator < 0) else float("-inf")


def sqrt_ratio(numerator: int, denominator: int) -> float:
    """sqrt(numerator / denominator) for integers >= 0, > 0, rounded once.

    r = isqrt(N * 4**k // D) with k such that r has at least 55 bits, so the
    exact root s lies in [r, r + 1); r + 1/2 when s is not r (a sticky bit)
    rounds to the same float64 as s, since no rounding boundary of a 55-bit
    or longer integer falls strictly between r and r + 1.
    """
    if numerator == 0:
        return 0.0
    k = max(0, (110 - (numerator.bit_length() - denominator.bit_length()) + 2) // 2 + 1)
    scaled = numerator << (2 * k)
    quotient = scaled // denominator
    r = math.isqrt(quotient)
    exact = r * r == quotient and quotient * denominator == scaled
    return divide(2 * r + (0 if exact else 1), 1 << (k + 1))
