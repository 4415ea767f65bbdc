"""Keras layers of the CNN that Keras itself does not provide in the form needed. Imports TensorFlow: import
this module lazily (cnn.py does, before building or loading a network).

DiracHeNormal: he_normal plus the identity (a convolution initialised to pass its first channels through).

FusedBatchNormalization: Keras 3's BatchNormalization computes the moments, the normalisation and the
moving averages as separate element-wise ops in float32. On the 2-core CPU that made BatchNorm the largest
cost of a training step (default net, batch 128, bfloat16: 411 ms/step, 52% of the matmul peak). The same
layer through TensorFlow's FusedBatchNormV3 (one oneDNN kernel forward, one backward, statistics in float32
whatever the input dtype) takes 263 ms/step (81%); the net without any BatchNorm 244 ms.
"""

from __future__ import annotations

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="fer_bench")
class FusedBatchNormalization(keras.layers.BatchNormalization):
    """keras.layers.BatchNormalization over the last axis of NHWC images, computed by FusedBatchNormV3.

    Same weights (gamma, beta, moving_mean, moving_variance, float32), same config, same forward result up
    to rounding; a model saved with it loads with it (the class is registered for serialisation). One
    difference: the moving variance is updated with the unbiased batch variance (the fused kernel applies
    Bessel's correction n/(n-1), as PyTorch does; Keras uses the biased one). With n = batch x height x width
    >= 4,608 values per channel in this net that changes the moving variance by < 0.03%.
    Not supported (Keras' own layer does them): masks, renorm, synchronized, axes other than the last.
    """

    def __init__(self, **kwargs):
        for option in ("renorm", "synchronized"):
            if kwargs.get(option):
                raise ValueError(f"FusedBatchNormalization does not support {option}=True")
        # The fused kernel wants float32 scale, offset and statistics with a bfloat16/float16 input; Keras'
        # autocasting would hand it the variables in the compute dtype.
        kwargs["autocast"] = False
        super().__init__(**kwargs)

    def build(self, input_shape):
        if len(input_shape) != 4 or self.axis not in (-1, 3):
            raise ValueError(f"FusedBatchNormalization normalises the last axis of 4-D inputs; got input shape "
                             f"{tuple(input_shape)} and axis={self.axis}")
        super().build(input_shape)

    def call(self, inputs, training=None, mask=None):
        if mask is not None:
            raise ValueError("FusedBatchNormalization does not support masks")
        inputs = tf.cast(inputs, self.compute_dtype)
        channels = self.moving_mean.shape[0]
        gamma = self.gamma if self.scale else tf.ones((channels,), tf.float32)
        beta = self.beta if self.center else tf.zeros((channels,), tf.float32)
        training = bool(training and self.trainable)
        # Training normalises with the batch statistics, and with exponential_avg_factor < 1 the kernel also
        # returns the updated moving averages: (1 - factor) * moving + factor * batch statistic. Inference
        # normalises with the moving statistics and returns them unchanged.
        outputs, moving_mean, moving_variance, *_ = tf.raw_ops.FusedBatchNormV3(
            x=inputs, scale=gamma, offset=beta, mean=self.moving_mean, variance=self.moving_variance,
            epsilon=self.epsilon, exponential_avg_factor=1.0 - self.momentum if training else 1.0,
            data_format="NHWC", is_training=training)
        if training:
            self.moving_mean.assign(moving_mean)
            self.moving_variance.assign(moving_variance)
        return outputs


@keras.saving.register_keras_serializable(package="fer_bench")
class DiracHeNormal(keras.initializers.HeNormal):
    """he_normal for a (k, k, c_in, c_out) convolution kernel, plus 1 at the centre tap from input channel i to
    output channel i for i < min(c_in, c_out): the layer starts close to the identity on those channels
    (airbench's dirac initialisation), so a deep stack starts as a shallow one."""

    def __call__(self, shape, dtype=None):
        kernel = super().__call__(shape, dtype=dtype)
        if len(shape) != 4:
            raise ValueError(f"DiracHeNormal initialises 2-D convolution kernels, got shape {tuple(shape)}")
        k_h, k_w, c_in, c_out = shape
        channels = min(c_in, c_out)
        identity = tf.scatter_nd([[k_h // 2, k_w // 2, i, i] for i in range(channels)],
                                 tf.ones([channels], kernel.dtype), shape)
        return kernel + identity


@keras.saving.register_keras_serializable(package="fer_bench")
class LinearOneCycle(keras.optimizers.schedules.LearningRateSchedule):
    """The one-cycle learning rate of short schedules (airbench, Page's ResNet series): linear from
    peak / 25 to `peak` over `warmup_steps`, then linear down to 0 at `total_steps`."""

    def __init__(self, peak: float, warmup_steps: int, total_steps: int):
        self.peak = float(peak)
        self.warmup_steps = int(warmup_steps)
        self.total_steps = int(total_steps)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        start = self.peak / 25
        warmup = max(self.warmup_steps, 1)
        rising = start + (self.peak - start) * step / warmup
        falling = self.peak * (self.total_steps - step) / max(self.total_steps - self.warmup_steps, 1)
        return tf.maximum(tf.where(step < self.warmup_steps, rising, falling), 0.0)

    def get_config(self):
        return {"peak": self.peak, "warmup_steps": self.warmup_steps, "total_steps": self.total_steps}
