"""The CNN's architecture, apart from the estimator (fer_bench.models.cnn): a Keras 3 functional VGG-style
network on raw 0..255 pixels. Keras is imported inside build_network.

Blocks of 3x3 Conv -> BatchNorm -> ReLU with max-pooling between blocks (BatchNorm is
keras_layers.FusedBatchNormalization: Keras' layer computed by one fused kernel), the last block's output
named LAST_CONV_LAYER (Grad-CAM), global average pooling (or flatten), dropout, a Dense layer named
LOGITS_LAYER and a separate softmax (saliency maps differentiate the logits).
"""

from __future__ import annotations

from fer_bench.models.cnn_training import IMAGE_SIZE

LOGITS_LAYER = "logits"
LAST_CONV_LAYER = "last_conv_block"
HEADS = ("gap", "flatten")
# Keras' default 0.99 lets the moving statistics lag ~100 steps behind weights that change fast at a high
# learning rate: on FER-2013 after 3 epochs that gave 21% accuracy in inference mode vs 51% with batch
# statistics on the same images. 0.9 (PyTorch's default) follows within ~10 steps.
BN_MOMENTUM = 0.9


def build_network(n_classes: int, *, filters, convs_per_block: int, head: str, dropout: float, seed: int,
                  input_size: int, bfloat16: bool, centre_crop: bool = False):
    """The network on input_size x input_size x 1 images; with centre_crop on 48x48 images whose centre crop a
    Cropping2D layer named "centre_crop" takes first (the same weights in the same order: the CNN's
    saliency_network). bfloat16: mixed-precision compute, float32 weights, logits and softmax."""
    import keras
    from keras import layers

    from fer_bench.models.keras_layers import FusedBatchNormalization

    compute = "mixed_bfloat16" if bfloat16 else "float32"
    size = int(input_size)
    if centre_crop:
        inputs = keras.Input((IMAGE_SIZE, IMAGE_SIZE, 1), name="image")
        margin = (IMAGE_SIZE - size) // 2
        x = layers.Cropping2D(((margin, IMAGE_SIZE - size - margin),) * 2, name="centre_crop")(inputs)
    else:
        inputs = x = keras.Input((size, size, 1), name="image")
    x = layers.Rescaling(1 / 127.5, offset=-1.0, name="normalise")(x)
    for block, channels in enumerate(filters, 1):
        if block > 1:
            x = layers.MaxPooling2D(2, name=f"block{block}_pool", dtype=compute)(x)
        for conv in range(1, convs_per_block + 1):
            last = block == len(filters) and conv == convs_per_block
            x = layers.Conv2D(channels, 3, padding="same", use_bias=False, kernel_initializer="he_normal",
                              name=f"block{block}_conv{conv}", dtype=compute)(x)
            x = FusedBatchNormalization(momentum=BN_MOMENTUM, name=f"block{block}_bn{conv}", dtype=compute)(x)
            x = layers.Activation("relu", name=LAST_CONV_LAYER if last else f"block{block}_relu{conv}",
                                  dtype=compute)(x)
    if head == "flatten":
        x = layers.Flatten(name="flatten", dtype=compute)(x)
    else:
        x = layers.GlobalAveragePooling2D(name="pool", dtype=compute)(x)
    x = layers.Dropout(dropout, seed=int(seed), name="dropout")(x)
    logits = layers.Dense(n_classes, name=LOGITS_LAYER, dtype="float32")(x)
    outputs = layers.Activation("softmax", name="softmax", dtype="float32")(logits)
    return keras.Model(inputs, outputs, name="fer_cnn")
