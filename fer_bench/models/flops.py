"""FLOP counts of Keras networks: the forward Conv/Dense arithmetic per image (fer_bench.measure reports it and
the achieved GFLOP/s; the CNN counts its training FLOPs with it). Imports Keras only when given a network."""

from __future__ import annotations

import math
import sys

from fer_bench.models.capabilities import Capability, offered

#: backward pass ~ 2x the forward arithmetic (gradients w.r.t. inputs and weights), so training ~ 3x forward
TRAINING_FLOPS_PER_FORWARD = 3


def keras_network(model):
    """The Keras network a model predicts with (what its keras_network() offers), the model itself if it is one,
    else None."""
    if "keras" in sys.modules and isinstance(model, sys.modules["keras"].Model):
        return model
    return offered(model, Capability.KERAS_NETWORK)


def _leaf_layers(keras_model):
    for layer in keras_model.layers:
        if hasattr(layer, "layers") and isinstance(layer.layers, list):
            yield from _leaf_layers(layer)
        else:
            yield layer


def _spatial(shape, data_format: str | None) -> int:
    """Product of the spatial dimensions of a (batch, ..., channels) or (batch, channels, ...) shape."""
    dims = shape[2:] if data_format == "channels_first" else shape[1:-1]
    return math.prod(int(d) for d in dims)


def _layer_forward_flops(layer, layers) -> int:
    if isinstance(layer, layers.Layer) and hasattr(layer, "layers") and isinstance(layer.layers, list):
        return sum(_layer_forward_flops(inner, layers) for inner in layer.layers)  # nested model
    kernels = [w for w in layer.weights if w.name in ("kernel", "depthwise_kernel", "pointwise_kernel")]
    if not kernels:
        return 0
    data_format = getattr(layer, "data_format", None)
    transposed = (layers.Conv1DTranspose, layers.Conv2DTranspose, layers.Conv3DTranspose)
    convolutions = (layers.Conv1D, layers.Conv2D, layers.Conv3D, layers.DepthwiseConv1D, layers.DepthwiseConv2D,
                    layers.SeparableConv1D, layers.SeparableConv2D)
    if isinstance(layer, transposed):
        # every input position is multiplied by the whole kernel
        positions = _spatial(layer.input.shape, data_format)
    elif isinstance(layer, convolutions):
        # every output position is a dot product with the whole kernel (per group / per input channel for
        # depthwise); a separable layer's pointwise 1x1 kernel runs on the depthwise output, same positions
        positions = _spatial(layer.output.shape, data_format)
    elif isinstance(layer, layers.Dense):
        # Dense on (batch, ..., features) applies the kernel at every leading position
        positions = math.prod(int(d) for d in layer.output.shape[1:-1])
    else:
        return 0
    return sum(2 * math.prod(int(d) for d in w.shape) * positions for w in kernels)


def forward_flops(model) -> int:
    """Forward-pass FLOPs per image of a built Keras model (or a model holding one as keras_model_).

    Counts the multiply-adds of Conv (1-3D, depthwise, separable, transposed) and Dense layers as 2 FLOPs each:
    2*k_h*k_w*c_in*c_out*H_out*W_out for Conv2D, 2*k_h*k_w*c_in*depth_multiplier*H_out*W_out for depthwise,
    2*n_in*n_out for Dense. Bias adds, activations, normalisation and pooling are left out (a few percent of a
    CNN's arithmetic, and memory-bound)."""
    keras_model = keras_network(model)
    if keras_model is None:
        raise ValueError(f"{type(model).__name__} is not a Keras model and holds no keras_model_")
    import keras

    return sum(_layer_forward_flops(layer, keras.layers) for layer in keras_model.layers)
