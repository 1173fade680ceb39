"""Quality gate on real frames and on the same frames degraded the ways cameras fail."""

import cv2
import numpy as np
import pytest
from conftest import field_frame

from edgehemo.device.quality import QualityGate, QualitySettings


@pytest.fixture(scope="module")
def frame(clip_frames):
    return field_frame(clip_frames, 2)


def test_sharp_frames_of_the_clip_pass(clip_frames):
    gate = QualityGate()
    for field in range(6):
        result = gate.assess(field_frame(clip_frames, field))
        assert result.ok, result


def test_motion_frames_of_the_clip_are_rejected_as_out_of_focus(clip_frames):
    assert QualityGate().assess(clip_frames[6]).reason == "out of focus"


@pytest.mark.parametrize(
    ("degrade", "reason"),
    [
        (lambda f: cv2.GaussianBlur(f, (0, 0), 3), "out of focus"),
        (lambda f: (f * 0.1).astype(np.uint8), "too dark"),
        (lambda f: np.clip(f.astype(np.int16) + 90, 0, 255).astype(np.uint8), "overexposed"),
        (lambda f: (f * np.array([0.55, 0.8, 1.0])).astype(np.uint8), "colour cast"),
    ],
)
def test_degraded_frames_get_their_reason(frame, degrade, reason):
    result = QualityGate().assess(degrade(frame))
    assert not result.ok and result.reason == reason, result


def test_thresholds_are_configurable(frame):
    strict = QualityGate(QualitySettings(min_focus=1e6))
    assert strict.assess(frame).reason == "out of focus"
    with pytest.raises(ValueError, match="extra"):
        QualitySettings(min_focuss=3)
