import numpy as np
import pytest

from edgehemo.metrics import classification_report, confusion_matrix, format_report


def test_hand_computed_example():
    # true:  a a a b b c
    # pred:  a a b b c c
    labels = np.array([0, 0, 0, 1, 1, 2])
    predictions = np.array([0, 0, 1, 1, 2, 2])
    report = classification_report(labels, predictions, ["a", "b", "c"])
    assert report["confusion_matrix"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert report["accuracy"] == pytest.approx(4 / 6)
    a, b, c = (report["per_class"][k] for k in "abc")
    assert (a["precision"], a["recall"]) == (pytest.approx(1.0), pytest.approx(2 / 3))
    assert (b["precision"], b["recall"]) == (pytest.approx(0.5), pytest.approx(0.5))
    assert (c["precision"], c["recall"]) == (pytest.approx(0.5), pytest.approx(1.0))
    assert a["f1"] == pytest.approx(0.8) and b["f1"] == pytest.approx(0.5)
    assert c["f1"] == pytest.approx(2 / 3)
    # specificity of b: TN = 6 - TP1 - FP1 - FN1 = 3, FP = 1 -> 3/4
    assert b["specificity"] == pytest.approx(0.75)
    assert a["specificity"] == pytest.approx(1.0)
    assert report["weighted_f1"] == pytest.approx((3 * 0.8 + 2 * 0.5 + 1 * 2 / 3) / 6)
    assert report["macro_f1"] == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    assert "accuracy 0.6667" in format_report(report)


def test_out_of_range_prediction_is_refused():
    with pytest.raises(ValueError, match="out of range"):
        confusion_matrix(np.array([0, 1]), np.array([0, 3]), 3)
