"""Artifact manifests: the JSON beside every exported model (export -> device).

In the spirit of torchvision's weight metadata: what the file is (format, precision, classes,
input and output tensors with their quantisation), how to feed it (preprocessing), where it came
from (source checkpoint, calibration set), how good it is (measured metrics) and on what runtime
that was verified. The device refuses an artifact whose sha256 differs from its manifest.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from edgehemo.errors import CheckpointError
from edgehemo.jsonfile import read_json_model, write_json_model
from edgehemo.ood import ColourReference
from edgehemo.preprocess import PreprocessSpec
from edgehemo.store.atomic import sha256_file

MANIFEST_VERSION = 1
Format = Literal["onnx", "tflite"]
Precision = Literal["fp32", "int8"]
Takes = Literal["cell_crop", "whole_frame"]


class TensorSpec(BaseModel):
    """One input or output tensor of an artifact."""

    model_config = ConfigDict(extra="forbid")

    name: str
    shape: list[int | str] = Field(description="Dimensions; a string marks a dynamic one.")
    dtype: Literal["float32", "int8", "uint8"]
    layout: str = ""
    scale: float | None = Field(None, description="Quantisation scale (integer tensors).")
    zero_point: int | None = Field(None, description="Quantisation zero point.")


class ArtifactManifest(BaseModel):
    """Everything the device needs to trust and feed one exported model."""

    model_config = ConfigDict(extra="forbid")

    manifest_version: int = MANIFEST_VERSION
    name: str = Field(description="Registry name, <model>_<precision>, e.g. cbam_cnn_int8.")
    architecture: str
    format: Format
    precision: Precision
    file: str = Field(description="Artifact file name, next to this manifest.")
    sha256: str
    bytes: int
    takes: Takes = "cell_crop"
    classes: tuple[str, ...]
    input: TensorSpec
    output: TensorSpec
    preprocessing: PreprocessSpec
    source_checkpoint_sha256: str
    adaptation: dict[str, Any] | None = Field(
        None, description="How the source checkpoint was adapted to a site without labels "
        "(edgehemo adapt), as its card records it: batchnorm_adapted or self_trained.")
    calibration: dict[str, Any] | None = None
    metrics: dict[str, Any] = Field(default_factory=dict)
    colour_reference: ColourReference | None = Field(
        None, description="Training crops' colour statistics, to flag unfamiliar crops."
    )
    operators: dict[str, int] = Field(default_factory=dict)
    verified_runtime: str = ""
    edgehemo_version: str


def manifest_path_for(artifact: str | Path) -> Path:
    """`cbam_cnn_int8.onnx` -> `cbam_cnn_int8.onnx.json`."""
    artifact = Path(artifact)
    return artifact.with_name(artifact.name + ".json")


def read_manifest(path: str | Path) -> ArtifactManifest:
    """Read and validate a manifest. CheckpointError names the file and the problem."""
    return read_json_model(path, ArtifactManifest, "manifest", "artifact")


def write_manifest(manifest: ArtifactManifest, path: str | Path) -> None:
    """Write atomically, pretty-printed."""
    write_json_model(manifest, path)


def verify_artifact(artifact: str | Path, manifest: ArtifactManifest) -> None:
    """Refuse an artifact that is truncated or differs from what its manifest describes."""
    artifact = Path(artifact)
    size = artifact.stat().st_size
    if size != manifest.bytes:
        raise CheckpointError(
            f"{artifact}: {size} bytes, its manifest says {manifest.bytes}: the file is "
            "truncated or replaced; re-copy or re-export it"
        )
    actual = sha256_file(artifact)
    if actual != manifest.sha256:
        raise CheckpointError(
            f"{artifact}: sha256 {actual[:12]}... does not match its manifest "
            f"({manifest.sha256[:12]}...): the file is corrupt or replaced; re-export it"
        )
