"""Red cells as a ruler: a field's magnification measured from its own red cells."""

from __future__ import annotations

import numpy as np
import pytest

from edgehemo.framing import ruler_window, window
from edgehemo.preprocess import PreprocessSpec, crop_and_resize, load_image, opencv
from edgehemo.ruler import (
    PBC_RED_CELL_DIAMETER,
    RedCellRuler,
    pbc_window_side,
    red_cell_diameter,
    red_cell_diameters,
)

PLASMA = (235, 225, 215)
RED_CELL = (215, 150, 160)  # haemoglobin absorbs green
NUCLEUS = (90, 40, 140)
RULER_SPEC = PreprocessSpec(framing="ruler")
AUTO_SPEC = PreprocessSpec(framing="auto")


def field(size: int, discs: list[tuple[int, int, int, tuple[int, int, int]]]) -> np.ndarray:
    """A plain background with discs (cx, cy, radius, colour)."""
    yy, xx = np.mgrid[:size, :size]
    image = np.empty((size, size, 3), dtype=np.uint8)
    image[:] = PLASMA
    for cx, cy, radius, colour in discs:
        image[(xx - cx) ** 2 + (yy - cy) ** 2 <= radius**2] = colour
    return image


def rescale(image: np.ndarray, factor: float) -> np.ndarray:
    cv2 = opencv()
    return cv2.resize(image, None, fx=factor, fy=factor,
                      interpolation=cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR)


def test_lone_red_cells_are_measured_and_clumps_white_cells_cut_cells_and_specks_are_not():
    image = field(400, [
        (80, 80, 30, RED_CELL), (300, 90, 30, RED_CELL),  # lone: 60 px across
        (100, 300, 30, RED_CELL), (150, 300, 30, RED_CELL),  # two overlapping: a clump
        (290, 290, 45, RED_CELL), (290, 290, 30, NUCLEUS),  # a white cell
        (399, 200, 30, RED_CELL),  # cut by the border
        (200, 60, 9, RED_CELL),  # round, but a platelet's size
    ])
    diameters = red_cell_diameters(image)
    assert len(diameters) == 2
    assert diameters == pytest.approx([60, 60], rel=0.05)
    assert red_cell_diameter(image) == pytest.approx(60, rel=0.05)
    assert red_cell_diameter(field(400, [(80, 80, 30, RED_CELL)])) == pytest.approx(60, rel=0.05)
    assert red_cell_diameter(field(400, [(80, 80, 30, RED_CELL)]), min_cells=2) is None


def test_the_ruler_follows_the_magnification_of_a_real_field(samples_dir):
    image = load_image(next(samples_dir.glob("neutrophil/*.jpg")))
    at_pbc = red_cell_diameter(image)
    assert at_pbc is not None and abs(at_pbc / PBC_RED_CELL_DIAMETER - 1) < 0.15
    for factor in (0.5, 1.4):
        measured = red_cell_diameter(rescale(image, factor))
        assert measured is not None and measured / at_pbc == pytest.approx(factor, rel=0.06)


def test_a_plain_or_malformed_image_has_no_ruler_or_a_clear_error():
    assert red_cell_diameters(np.full((100, 100, 3), 200, dtype=np.uint8)) == []
    with pytest.raises(ValueError, match="RGB uint8"):
        red_cell_diameters(np.zeros((100, 100), dtype=np.uint8))


def test_ruler_framing_shows_a_field_at_another_magnification_as_the_model_was_trained(
        samples_dir):
    image = load_image(next(samples_dir.glob("lymphocyte/*.jpg")))
    trained_view = crop_and_resize(image, AUTO_SPEC).astype(float)
    assert np.array_equal(crop_and_resize(image, RULER_SPEC), crop_and_resize(image, AUTO_SPEC))
    half = rescale(image, 0.5)  # the cell at half size, in a plain field twice as wide
    wide = field(2 * max(half.shape[:2]), [])
    top, left = (wide.shape[0] - half.shape[0]) // 2, (wide.shape[1] - half.shape[1]) // 2
    wide[top : top + half.shape[0], left : left + half.shape[1]] = half
    ruler_view = crop_and_resize(wide, RULER_SPEC).astype(float)
    auto_view = crop_and_resize(wide, AUTO_SPEC).astype(float)
    error_ruler = np.abs(ruler_view - trained_view).mean()
    error_auto = np.abs(auto_view - trained_view).mean()
    assert error_ruler < 0.5 * error_auto


def test_a_given_site_diameter_sets_the_window_and_a_bad_one_is_refused():
    image = field(400, [(200, 200, 30, NUCLEUS)])
    box = ruler_window(image, RULER_SPEC.crop_fraction, red_cell=36.0)
    assert box is not None
    side = box[2] - box[0]
    assert side == round(pbc_window_side(RULER_SPEC.crop_fraction, 36.0))
    assert abs((box[0] + box[2]) / 2 - 200) <= 2 and abs((box[1] + box[3]) / 2 - 200) <= 2
    assert window(image, box).shape[:2] == (side, side)
    with pytest.raises(ValueError, match="positive"):
        ruler_window(image, RULER_SPEC.crop_fraction, red_cell=0.0)


def test_a_session_ruler_pools_frames_then_stops_measuring():
    ruler = RedCellRuler(enough=4, first=3)
    two = field(400, [(80, 80, 30, RED_CELL), (300, 90, 30, RED_CELL)])
    assert ruler.update(two) is None and ruler.measured == 2  # too few to go on yet
    assert ruler.update(field(400, [(80, 80, 20, RED_CELL)])) == pytest.approx(60, rel=0.05)
    assert ruler.diameter is None  # provisional: the median so far
    assert ruler.update(field(400, [(80, 80, 20, RED_CELL)])) == pytest.approx(50, rel=0.05)
    assert ruler.diameter == pytest.approx(50, rel=0.05)  # fixed
    assert ruler.update(field(400, [(80, 80, 10, RED_CELL)])) == ruler.diameter
    assert ruler.measured == 4  # later frames are not measured
    assert RedCellRuler(known=88.0).update(two) == 88.0
    with pytest.raises(ValueError, match="at least 1"):
        RedCellRuler(enough=0)
    with pytest.raises(ValueError, match="positive"):
        RedCellRuler(known=-3.0)


def test_a_red_cell_seen_in_many_frames_of_a_field_counts_once():
    ruler = RedCellRuler(enough=30, first=1)
    still = field(400, [(80, 80, 30, RED_CELL), (300, 90, 30, RED_CELL)])
    ruler.update(still)
    ruler.update(still, (0.0, 0.0))
    assert ruler.measured == 2
    # the stage moves 40 px left: both cells move with the field and a third comes into view
    moved = field(400, [(40, 80, 30, RED_CELL), (260, 90, 30, RED_CELL),
                        (330, 300, 30, RED_CELL)])
    ruler.update(moved, (-40.0, 0.0))
    assert ruler.measured == 3
    ruler.update(moved, (0.0, 0.0))
    assert ruler.measured == 3
    ruler.update(moved)  # a new field: the tracker lost the last one
    assert ruler.measured == 6


def test_the_magnification_command_measures_a_microscope_from_its_fields(clip_frames, tmp_path):
    import json
    import subprocess
    import sys

    cv2 = opencv()
    fields = tmp_path / "fields"
    fields.mkdir()
    for index, frame in enumerate(clip_frames):
        cv2.imwrite(str(fields / f"{index:02d}.png"), frame)
    (fields / "notes.txt").write_text("not an image")
    command = [sys.executable, "-m", "edgehemo.cli", "magnification"]
    measured = subprocess.run([*command, str(fields), "--json"], capture_output=True, text=True)
    assert measured.returncode == 0 and "notes.txt" in measured.stderr + measured.stdout
    result = json.loads(measured.stdout[measured.stdout.index("{"):])
    # the clip is six BCCD fields; BCCD's red cells measure 88.6 px pooled over all its frames
    assert 80 < result["red_cell_px"] < 100 and result["images"] == len(clip_frames)
    assert 0 < result["images_with_red_cells"] < result["images"]
    assert result["scale_vs_training"] == round(result["red_cell_px"] / PBC_RED_CELL_DIAMETER, 3)

    plain = tmp_path / "plain"
    plain.mkdir()
    cv2.imwrite(str(plain / "blank.png"), np.full((200, 200, 3), 230, dtype=np.uint8))
    empty = subprocess.run([*command, str(plain)], capture_output=True, text=True)
    assert empty.returncode == 2 and "no lone red cell in the 1 image(s)" in empty.stderr


def test_red_cells_implausibly_small_beside_the_nucleus_are_no_ruler():
    # two lone discs a sixth of the nucleus's size: specks, not red cells, whatever their shape
    image = field(400, [(200, 200, 60, NUCLEUS), (60, 60, 10, RED_CELL), (340, 60, 10, RED_CELL)])
    assert red_cell_diameters(image) == pytest.approx([20, 20], rel=0.1)
    assert ruler_window(image, RULER_SPEC.crop_fraction) is None
    assert np.array_equal(crop_and_resize(image, RULER_SPEC), crop_and_resize(image, AUTO_SPEC))
    plausible = field(400, [(200, 200, 60, NUCLEUS), (60, 60, 30, RED_CELL),
                            (340, 60, 30, RED_CELL)])
    assert ruler_window(plausible, RULER_SPEC.crop_fraction) is not None
