"""Cell framing: a single-cell image of any crop is framed around its white cell."""

from __future__ import annotations

import numpy as np
import pytest

from edgehemo.framing import (
    NUCLEUS_WINDOW,
    auto_window,
    cell_window,
    locate_nucleus,
    reframe,
    window,
)
from edgehemo.preprocess import PreprocessSpec, crop_and_resize, load_image

PLASMA = (235, 215, 205)  # pale pink background, RGB
NUCLEUS = (90, 40, 140)  # blue-violet, RGB
CELL_SPEC = PreprocessSpec(framing="cell")
AUTO_SPEC = PreprocessSpec(framing="auto")


def smear(height: int, width: int, nuclei: list[tuple[int, int, int]]) -> np.ndarray:
    """A plain background with purple discs (cx, cy, radius)."""
    yy, xx = np.mgrid[:height, :width]
    image = np.empty((height, width, 3), dtype=np.uint8)
    image[:] = PLASMA
    for cx, cy, radius in nuclei:
        image[(xx - cx) ** 2 + (yy - cy) ** 2 <= radius**2] = NUCLEUS
    return image


def test_the_nucleus_is_found_where_it_is_and_as_large_as_it_is():
    nucleus = locate_nucleus(smear(300, 400, [(250, 120, 40)]))
    assert nucleus is not None
    assert abs(nucleus.cx - 250) < 4 and abs(nucleus.cy - 120) < 4
    assert abs(nucleus.extent - 80) < 6


def test_of_two_nuclei_the_one_near_the_centre_frames_the_crop():
    # a neighbouring cell at the edge of a wide crop must not take the window
    nucleus = locate_nucleus(smear(300, 300, [(150, 150, 30), (30, 30, 36)]))
    assert nucleus is not None and abs(nucleus.cx - 150) < 4 and abs(nucleus.cy - 150) < 4


def test_a_neighbour_at_the_edge_does_not_take_the_window_even_when_larger():
    nucleus = locate_nucleus(smear(360, 360, [(180, 180, 30), (20, 180, 45)]))
    assert nucleus is not None and abs(nucleus.cx - 180) < 4


def test_the_lobes_of_one_nucleus_are_framed_together():
    lobes = [(130, 150, 18), (170, 150, 18), (150, 185, 16)]  # gaps of ~4 px between lobes
    nucleus = locate_nucleus(smear(300, 300, lobes))
    assert nucleus is not None and nucleus.extent > 70  # all three lobes, not one (~36)


def test_no_stained_nucleus_means_no_cell_window_and_a_centre_crop():
    plain = smear(200, 200, [])
    assert locate_nucleus(plain) is None and cell_window(plain) is None
    noisy = np.clip(plain + np.random.default_rng(0).normal(0, 4, plain.shape), 0, 255)
    assert cell_window(noisy.astype(np.uint8)) is None
    framed = crop_and_resize(plain, CELL_SPEC)
    assert np.array_equal(framed, crop_and_resize(plain, PreprocessSpec()))


def test_a_cell_framed_window_is_square_and_sized_by_the_nucleus():
    box = cell_window(smear(300, 300, [(150, 150, 40)]))
    assert box is not None
    side = box[2] - box[0]
    assert side == box[3] - box[1]
    assert abs(side - NUCLEUS_WINDOW * 80) < 8
    wider = cell_window(smear(300, 300, [(150, 150, 40)]), ratio=2.3)
    assert wider is not None and abs((wider[2] - wider[0]) - 2.3 * 80) < 8


def test_a_window_past_the_border_replicates_the_edge_and_keeps_the_cell_centred():
    image = smear(100, 100, [(50, 50, 35)])
    box = cell_window(image)
    assert box is not None and box[0] < 0 and box[2] > 100  # wider than the tight crop
    cut = window(image, box)
    assert cut.shape[:2] == (box[3] - box[1], box[2] - box[0])
    assert tuple(cut[0, 0]) == tuple(image[0, 0])  # the corner is replicated
    middle = cut.shape[0] // 2
    assert tuple(cut[middle, middle]) == NUCLEUS


def test_cell_framing_makes_a_tight_crop_and_its_field_look_alike(samples_dir):
    """The failure that motivates it: a tight crop of a PBC cell, centre-cropped, is a close-up
    of the nucleus; cell framing gives nearly the view of the whole field."""
    image = load_image(next(samples_dir.glob("neutrophil/*.jpg")))
    height, width = image.shape[:2]
    tight = image[height // 2 - 72 : height // 2 + 72, width // 2 - 72 : width // 2 + 72]
    field_view = crop_and_resize(image, CELL_SPEC).astype(float)
    tight_cell = crop_and_resize(tight, CELL_SPEC).astype(float)
    tight_centre = crop_and_resize(tight, PreprocessSpec()).astype(float)
    assert tight_cell.shape == tight_centre.shape == (64, 64, 3)
    # the cell-framed tight crop differs from the full field's view only at its padded edges
    assert np.abs(tight_cell - field_view).mean() < 0.5 * np.abs(tight_centre - field_view).mean()


def test_auto_framing_keeps_the_centre_window_of_a_field_framed_like_the_training_data():
    centre = (80, 80, 280, 280)
    # slightly off-centre and a little wider than the window: as PBC's large cells are
    assert auto_window(smear(360, 360, [(215, 170, 110)]), centre) == centre
    assert auto_window(smear(360, 360, []), centre) == centre  # no nucleus: centre as before


def test_auto_framing_moves_to_a_nucleus_far_off_centre_or_much_wider_than_the_window():
    off_centre = smear(360, 360, [(250, 180, 45)])  # 70 px = 0.35 windows off the centre
    x0, _, x1, _ = auto_window(off_centre, (80, 80, 280, 280))
    assert abs((x0 + x1) / 2 - 250) < 4 and x1 - x0 == 200  # re-centred, never smaller
    tight = smear(120, 120, [(60, 60, 50)])  # the nucleus fills a tight crop
    x0, _, x1, _ = auto_window(tight, (27, 27, 93, 93))
    assert abs((x1 - x0) - NUCLEUS_WINDOW * 100) < 8  # widened past the image, by the rule


def test_auto_framing_moves_only_the_bundled_field_whose_cell_lies_far_off_centre(samples_dir):
    """The shipped models were trained on PBC's centre squares: auto framing keeps them for 31
    of the 32 bundled fields; the one it moves is an eosinophil low in its field, cut by the
    centre square."""
    moved = []
    for path in sorted(samples_dir.glob("*/*.jpg")):
        image = load_image(path)
        if not np.array_equal(crop_and_resize(image, AUTO_SPEC),
                              crop_and_resize(image, PreprocessSpec())):
            moved.append(path.name)
            nucleus = locate_nucleus(image)
            assert nucleus is not None and nucleus.cy - image.shape[0] / 2 > 50
    assert moved == ["EO_144566.jpg"]


def test_auto_framing_frames_a_tight_crop_like_its_field(samples_dir):
    image = load_image(next(samples_dir.glob("lymphocyte/*.jpg")))
    height, width = image.shape[:2]
    tight = image[height // 2 - 72 : height // 2 + 72, width // 2 - 72 : width // 2 + 72]
    field_view = crop_and_resize(image, PreprocessSpec()).astype(float)
    tight_auto = crop_and_resize(tight, AUTO_SPEC).astype(float)
    tight_centre = crop_and_resize(tight, PreprocessSpec()).astype(float)
    assert np.abs(tight_auto - field_view).mean() < 0.5 * np.abs(tight_centre - field_view).mean()


def test_reframing_framed_crops_keeps_their_shape_and_moves_the_off_centre_ones(sample_set):
    images = sample_set.images[:8]
    shifted = np.roll(images, 12, axis=2)  # cells moved right, as a careless crop would
    out = reframe(shifted)
    assert out.shape == shifted.shape and out.dtype == np.uint8
    assert not np.array_equal(out, shifted)


def test_framing_must_be_a_known_word():
    with pytest.raises(ValueError, match="framing"):
        PreprocessSpec(framing="middle")


def test_specs_written_before_framing_existed_read_as_centre_framing():
    spec = PreprocessSpec.model_validate({"input_size": 64, "colour_norm": "per_image"})
    assert spec.framing == "centre"
