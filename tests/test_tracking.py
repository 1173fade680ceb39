"""A cell in a still or drifting field is counted once; a new field starts afresh."""

from conftest import field_frame

from edgehemo.device.cellfinder import CellFinder
from edgehemo.device.tracking import CellTracker


def run(tracker, frame):
    cells = CellFinder().find(frame)
    return tracker.update(frame, cells)


def test_the_clip_counts_each_cell_once(clip_frames):
    tracker = CellTracker()
    finder = CellFinder()
    new_total = 0
    for frame in clip_frames:
        result = tracker.update(frame, finder.find(frame))
        new_total += sum(result.new)
    # 8 annotated white cells in 6 fields; blurred motion frames are fed too here (no gate)
    assert new_total <= 10
    fields_only = CellTracker()
    counted = sum(
        sum(fields_only.update(f, finder.find(f)).new)
        for i, f in enumerate(clip_frames) if i < 6 or (i - 8) % 8 < 6
    )
    assert counted == 8


def test_still_field_then_drift_then_new_field(clip_frames):
    tracker = CellTracker()
    first = run(tracker, field_frame(clip_frames, 0))
    assert first.new == [True, True] and not first.reset
    again = run(tracker, clip_frames[1])  # same field, drifted 1.5 px
    assert again.new == [False, False]
    other = run(tracker, field_frame(clip_frames, 1))
    assert other.reset and other.moved and all(other.new)


def test_a_pan_of_the_stage_keeps_the_cells_it_already_counted(clip_frames):
    import cv2
    import numpy as np

    frame = field_frame(clip_frames, 0)
    panned = cv2.warpAffine(frame, np.float32([[1, 0, 40], [0, 1, 20]]), frame.shape[1::-1],
                            borderMode=cv2.BORDER_REPLICATE)
    tracker = CellTracker()
    run(tracker, frame)
    result = run(tracker, panned)
    assert not result.reset and result.moved
    assert abs(result.shift[0] - 40) < 3 and abs(result.shift[1] - 20) < 3
    assert result.new == [False] * len(result.new) and result.new
