"""The unfamiliar-crop signal: PBC crops are familiar, the same crops re-stained or tinted are not,
and a session made mostly of them is flagged."""

import numpy as np

from edgehemo.device.session import SlideSession
from edgehemo.ood import ColourReference, session_looks_unfamiliar


def test_training_like_crops_are_familiar_and_shifted_ones_are_not(sample_set):
    reference = ColourReference.fit(sample_set.images, "bundled samples")
    assert reference.unfamiliar(sample_set.images).mean() <= 0.05
    tinted = np.clip(sample_set.images * np.array([1.0, 0.85, 0.7]), 0, 255).astype(np.uint8)
    assert reference.unfamiliar(tinted).mean() >= 0.9
    darker = (sample_set.images * 0.7).astype(np.uint8)
    assert reference.unfamiliar(darker).mean() >= 0.9
    restored = ColourReference.model_validate_json(reference.model_dump_json())
    assert np.allclose(restored.distances(tinted), reference.distances(tinted), rtol=1e-3)


def test_a_session_of_mostly_unfamiliar_cells_is_flagged():
    session = SlideSession(("a", "b"))
    for index in range(12):
        flags = session.add("a", 0.9, unfamiliar=index % 4 != 0)
    assert "unfamiliar" in flags
    assert session.looks_unfamiliar
    assert "look unlike the images the model was trained on" in session.attention_summary()[0]
    assert not session_looks_unfamiliar(9, 9)  # too few cells to say
    assert not session_looks_unfamiliar(20, 10)
