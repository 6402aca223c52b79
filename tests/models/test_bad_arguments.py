"""Class counts that are not positive integers fail at once, naming the argument and value."""

import numpy as np
import pytest

import keras_efficient as ke
from keras_efficient.configs.efficientdet import get_efficientdet_spec
from keras_efficient.models import get_model

BAD_COUNTS = [True, False, 2.5, "3", 0, -1, None, 3.0]
TINY = get_efficientdet_spec("lite0").with_(input_size=128, fpn_filters=16, fpn_cells=1,
                                            head_repeats=1)


@pytest.mark.parametrize("value", BAD_COUNTS)
@pytest.mark.parametrize("build", [
    lambda n: ke.EfficientDet("lite0", num_classes=n),
    lambda n: ke.EfficientDetLite0(num_classes=n),
    lambda n: ke.EfficientDetD0(n),
    lambda n: get_model("efficientdet-lite0", num_classes=n),
], ids=["EfficientDet", "EfficientDetLite0", "EfficientDetD0", "get_model"])
def test_detector_num_classes_must_be_a_positive_int(build, value):
    with pytest.raises(ValueError, match="`num_classes` must be a positive integer") as info:
        build(value)
    assert f"received num_classes={value!r}" in str(info.value)


@pytest.mark.parametrize("value", BAD_COUNTS)
@pytest.mark.parametrize("build", [
    lambda n: ke.EfficientNetB0(weights=None, classes=n),
    lambda n: ke.EfficientNetLite0(weights=None, classes=n),
    lambda n: get_model("b0", weights=None, classes=n),
], ids=["EfficientNetB0", "EfficientNetLite0", "get_model"])
def test_classifier_classes_must_be_a_positive_int(build, value):
    with pytest.raises(ValueError, match="`classes` must be a positive integer") as info:
        build(value)
    assert f"received classes={value!r}" in str(info.value)


def test_numpy_integer_class_count_is_accepted():
    detector = ke.EfficientDet(TINY, num_classes=np.int64(3))
    assert tuple(detector.output["class_logits"].shape)[-1] == 3
    detector.to_json()  # the count serializes
