"""The last steps of full-dataset normalization, as single TensorFlow kernels.

Shared by the tf.Transform graph (components/preprocessing.py) and the constant Keras layers
(layers.py), so that both serve the same few kernels per request: generic
forms build two kernels where one does (x / s with a zero guard is a division
and a Select; tf.clip_by_value is Minimum and Maximum), and at batch 1 each
kernel is a measurable share of a call (benchmarks/serving_latency.py).
"""

import tensorflow as tf

# No sane normalized value comes near 1e6, and a downstream float32 sum of
# many values this size cannot overflow, as it could near float32 max.
OUTPUT_LIMIT = 1e6


def scale_clip_float32(deviation: tf.Tensor, inverse) -> tf.Tensor:
    """float32(clip(deviation * inverse, +-OUTPUT_LIMIT)), float64 math.

    `inverse` is 1 / scale per feature, 0 where the feature is not scaled;
    MulNoNan gives 0 for a zero factor even when the deviation is +-inf, and
    the clip turns an infinite input of a scaled feature into +-OUTPUT_LIMIT.
    """
    limit = tf.constant(OUTPUT_LIMIT, tf.float64)
    scaled = tf.math.multiply_no_nan(deviation, tf.convert_to_tensor(inverse, tf.float64))
    return tf.cast(tf.raw_ops.ClipByValue(t=scaled, clip_value_min=-limit, clip_value_max=limit), tf.float32)
