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
WHITENING_LAYER = "whitening"
#: added to the patch covariance's eigenvalues before the whitening filters divide by their square roots
WHITENING_EPSILON = 5e-4
#: training patches the whitening filters are computed from
WHITENING_PATCHES = 100_000
LAST_CONV_LAYER = "last_conv_block"
HEADS = ("gap", "flatten")
# Keras' default 0.99 lets the moving statistics lag ~100 steps behind weights that change fast at a high
# learning rate: on FER-2013 after 3 epochs that gave 21% accuracy in inference mode vs 51% with batch
# statistics on the same images. 0.9 (PyTorch's default) follows within ~10 steps.
BN_MOMENTUM = 0.9


def build_network(n_classes: int, *, filters, convs_per_block: int, head: str, dropout: float, seed: int,
                  input_size: int | None, bfloat16: bool, centre_crop: bool = False, batchnorm_scale: bool = True,
                  dirac_init: bool = False, whitening: int = 0):
    """The network on input_size x input_size x 1 images (None: any size, for progressive resizing); with
    centre_crop on 48x48 images whose centre crop a Cropping2D layer named "centre_crop" takes first (the same
    weights in the same order: the CNN's saliency_network). bfloat16: mixed-precision compute, float32 weights,
    logits and softmax.

    batchnorm_scale: BatchNorm with a learned scale (False: shift only). dirac_init: every 3x3 convolution starts
    as he_normal plus the identity on its first min(c_in, c_out) channels (airbench's dirac initialisation).
    whitening: patch size k of a frozen first convolution (2k^2 channels: the whitening filters of the training
    patches and their negatives, set by set_whitening) before the first block; 0: none."""
    import keras
    from keras import layers

    from fer_bench.models.keras_layers import DiracHeNormal, FusedBatchNormalization

    compute = "mixed_bfloat16" if bfloat16 else "float32"
    if centre_crop:
        size = int(input_size)
        inputs = keras.Input((IMAGE_SIZE, IMAGE_SIZE, 1), name="image")
        margin = (IMAGE_SIZE - size) // 2
        x = layers.Cropping2D(((margin, IMAGE_SIZE - size - margin),) * 2, name="centre_crop")(inputs)
    else:
        size = None if input_size is None else int(input_size)
        inputs = x = keras.Input((size, size, 1), name="image")
    x = layers.Rescaling(1 / 127.5, offset=-1.0, name="normalise")(x)
    if whitening:
        x = layers.Conv2D(2 * whitening**2, whitening, padding="same", use_bias=False, trainable=False,
                          name=WHITENING_LAYER, dtype=compute)(x)
    for block, channels in enumerate(filters, 1):
        if block > 1:
            x = layers.MaxPooling2D(2, name=f"block{block}_pool", dtype=compute)(x)
        for conv in range(1, convs_per_block + 1):
            last = block == len(filters) and conv == convs_per_block
            x = layers.Conv2D(channels, 3, padding="same", use_bias=False,
                              kernel_initializer=DiracHeNormal(seed=None) if dirac_init else "he_normal",
                              name=f"block{block}_conv{conv}", dtype=compute)(x)
            x = FusedBatchNormalization(momentum=BN_MOMENTUM, scale=batchnorm_scale, name=f"block{block}_bn{conv}",
                                        dtype=compute)(x)
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


def whitening_filters(images, patch_size: int, seed: int):
    """(k, k, 1, 2k^2) kernel of the frozen whitening convolution: the eigenvectors of the covariance of
    WHITENING_PATCHES k x k patches of `images` (uint8 (N, 48, 48), normalised as the network's input is), each
    divided by the square root of its eigenvalue (+ WHITENING_EPSILON), then the same filters negated, so a
    ReLU-free first layer keeps both signs (airbench's patch whitening)."""
    import numpy as np

    rng = np.random.default_rng([int(seed), 0x57])
    k = int(patch_size)
    n = min(WHITENING_PATCHES, len(images) * (IMAGE_SIZE - k + 1) ** 2)
    which = rng.integers(0, len(images), n)
    rows, cols = rng.integers(0, IMAGE_SIZE - k + 1, n), rng.integers(0, IMAGE_SIZE - k + 1, n)
    offsets = np.arange(k)
    patches = images[which[:, None, None], rows[:, None, None] + offsets[None, :, None],
                     cols[:, None, None] + offsets[None, None, :]].reshape(n, k * k).astype(np.float64)
    patches = patches / 127.5 - 1.0
    covariance = np.cov(patches, rowvar=False)
    eigenvalues, eigenvectors = np.linalg.eigh(covariance)
    filters = eigenvectors / np.sqrt(eigenvalues + WHITENING_EPSILON)  # columns: one filter each
    kernel = filters.T.reshape(k * k, k, k).transpose(1, 2, 0)[:, :, None, :]
    return np.concatenate([kernel, -kernel], axis=-1).astype(np.float32)


def set_whitening(network, kernel) -> None:
    """Put the whitening filters into a network built with whitening (its frozen first convolution)."""
    network.get_layer(WHITENING_LAYER).set_weights([kernel])
