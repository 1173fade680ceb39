"""Where LiteRT's time goes in CBAM-CNN: full-integer TFLite files of the architecture with parts
of its attention left out, and two lone layers, built in Keras with random weights.

    .venv-tflite/bin/python bench/build_attention_variants.py --out /tmp/variants
    .venv/bin/python bench/bench_tflite_files.py /tmp/variants/*.tflite

Runs in the converter's environment (`make tflite-env`: TensorFlow); time the files with
`bench_tflite_files.py` in the main one. Random weights, random calibration: the files are for
timing only. Variants: `plain` (the four Conv-ReLU-MaxPool stages and the dense layer, no
attention), `channel` (plus CBAM's channel gates), `cbam` (plus the spatial gates with their
plain 7x7 convolution), `cbam_blocked` (the spatial gates as the exported graph computed them
from 30 Nov 2026 until the strips replaced them: on maps of 16x16 and more, SpaceToDepth of the
descriptor into 4x4 blocks, a 3x3 convolution, a one-hot transposed convolution back to pixels),
`cbam_blocked_d2s` (the same with DepthToSpace, which the Edge TPU compiler lacks, instead of
the transposed convolution), `cbam_strips` (as the exported graph computes them now,
`strip_convolution` in train/blocks.py: each descriptor map reshaped into strips of up to 8
pixels of a row, one 7x3 convolution per map, summed, reshaped back); and the lone layers
`gate7x7_32` (the 2 -> 1 7x7 gate convolution on a 32x32 map) and `conv3x3_32` (the 32 -> 64
3x3 convolution on it); the four stages' convolutions alone with their ReLU, `stage_conv_64`
(3 -> 32 at 64x64) to `stage_conv_8` (128 -> 256 at 8x8), which set the floor of the model's
time; `stage_conv_64_strips2`, `_strips4` and `_strips8`, the first of them computed on row
strips of 2, 4 or 8 pixels of the image (a reshape in and out, as the exported graph does it
since 1 Dec 2026 with strips of 2: `strip_first_convolution` in export/onnx_export.py);
`gate_product_32`, a channel gate applied to a 32x32x32 map (mean, sigmoid and the
broadcast product), and `product_32`, the same map times itself element by element.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import tensorflow as tf

L = tf.keras.layers
K = tf.keras.ops
CHANNELS = (32, 64, 128, 256)


def channel_gate(x: tf.Tensor, channels: int) -> tf.Tensor:
    first, second = L.Conv2D(channels // 4, 1, activation="relu"), L.Conv2D(channels, 1)
    average = K.mean(x, axis=[1, 2], keepdims=True)
    maximum = K.max(x, axis=[1, 2], keepdims=True)
    return x * K.sigmoid(second(first(average)) + second(first(maximum)))


def strips(x: tf.Tensor, strip: int) -> tf.Tensor:
    """(1, H, W, 1) as (1, H, W / strip, strip): the same bytes."""
    return L.Reshape((x.shape[1], x.shape[2] // strip, strip))(x)


def strip_gate(x: tf.Tensor) -> tf.Tensor:
    """The spatial gate as the exported graph computes it (`strip_convolution` in
    train/blocks.py): each descriptor map in strips of up to 8 pixels of a row, one 7x3
    convolution per map, summed, reshaped back to pixels."""
    strip = next(s for s in (8, 4, 2) if x.shape[2] % s == 0)
    terms = [L.Conv2D(strip, (7, 3), padding="same")(strips(descriptor, strip)) for descriptor
             in (K.mean(x, axis=-1, keepdims=True), K.max(x, axis=-1, keepdims=True))]
    return x * K.sigmoid(L.Reshape((*x.shape[1:3], 1))(terms[0] + terms[1]))


def spatial_gate(x: tf.Tensor, blocked: str) -> tf.Tensor:
    descriptor = K.concatenate([K.max(x, axis=-1, keepdims=True),
                                K.mean(x, axis=-1, keepdims=True)], -1)
    if blocked and x.shape[1] >= 16:
        blocks = L.Lambda(lambda t: tf.nn.space_to_depth(t, 4))(descriptor)
        per_block = L.Conv2D(16, 3, padding="same")(blocks)
        if blocked == "depth_to_space":
            logits = L.Lambda(lambda t: tf.nn.depth_to_space(t, 4))(per_block)
        else:
            logits = L.Conv2DTranspose(1, 4, strides=4)(per_block)
    else:
        logits = L.Conv2D(1, 7, padding="same")(descriptor)
    return x * K.sigmoid(logits)


def cbam_cnn(variant: str) -> tf.keras.Model:
    image = tf.keras.Input((64, 64, 3), batch_size=1)
    x = image
    for channels in CHANNELS:
        x = L.MaxPool2D(2)(L.Conv2D(channels, 3, padding="same", activation="relu")(x))
        if variant != "plain":
            x = channel_gate(x, channels)
        if variant == "cbam_strips":
            x = strip_gate(x)
        elif variant.startswith("cbam"):
            x = spatial_gate(x, blocked={"cbam": "", "cbam_blocked": "transposed_conv",
                                         "cbam_blocked_d2s": "depth_to_space"}[variant])
    return tf.keras.Model(image, L.Dense(8)(L.Flatten()(x)))


def lone(shape: tuple[int, int, int], layer: Callable[[tf.Tensor], tf.Tensor]) -> tf.keras.Model:
    x = tf.keras.Input(shape, batch_size=1)
    return tf.keras.Model(x, layer(x))


def full_integer(model: tf.keras.Model, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    shape = (1, *model.input_shape[1:])

    def samples() -> Iterator[list[np.ndarray]]:
        for _ in range(32):
            yield [rng.standard_normal(shape).astype(np.float32)]

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = samples
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    return converter.convert()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    tf.keras.utils.set_random_seed(0)
    models = {variant: cbam_cnn(variant) for variant in
              ("plain", "channel", "cbam", "cbam_blocked", "cbam_blocked_d2s", "cbam_strips")}
    models["gate7x7_32"] = lone((32, 32, 2), lambda x: L.Conv2D(1, 7, padding="same")(x))
    models["conv3x3_32"] = lone((32, 32, 32), lambda x: L.Conv2D(64, 3, padding="same")(x))
    for size, channels_in, channels_out in zip((64, 32, 16, 8), (3, *CHANNELS[:3]), CHANNELS,
                                              strict=True):
        models[f"stage_conv_{size}"] = lone(
            (size, size, channels_in),
            lambda x, c=channels_out: L.Conv2D(c, 3, padding="same", activation="relu")(x))
    for strip in (2, 4, 8):
        models[f"stage_conv_64_strips{strip}"] = lone((64, 64, 3), lambda x, s=strip: L.Reshape(
            (64, 64, CHANNELS[0]))(L.Conv2D(CHANNELS[0] * s, 3, padding="same",
                                            activation="relu")(L.Reshape((64, 64 // s, 3 * s))(x))))
    models["gate_product_32"] = lone((32, 32, 32), lambda x: x * K.sigmoid(
        K.mean(x, axis=[1, 2], keepdims=True)))
    models["product_32"] = lone((32, 32, 32), lambda x: x * x)
    for name, model in models.items():
        path = args.out / f"{name}.tflite"
        path.write_bytes(full_integer(model))
        print(path)


if __name__ == "__main__":
    main()
