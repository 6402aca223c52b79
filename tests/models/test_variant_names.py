"""Every name-normalising caller goes through configs.names.resolve_variant (issue 14)."""

import pytest

from keras_efficient.cli import main
from keras_efficient.configs.names import known_variants
from keras_efficient.export import jobs
from keras_efficient.models.variants import MODEL_BUILDERS, get_model


def test_the_registry_holds_exactly_the_table_names():
    assert list(MODEL_BUILDERS) == list(known_variants())


@pytest.mark.parametrize(("query", "registered"), [
    ("b0", "efficientnetb0"),
    ("EfficientNet_Lite0", "efficientnetlite0"),
    ("lite0", "efficientnetlite0"),
    ("d0", "efficientdet-d0"),
    ("lite3x", "efficientdet-lite3x"),
    ("efficientdet_lite0", "efficientdet-lite0"),
])
def test_get_model_resolves_names(monkeypatch, query, registered):
    monkeypatch.setitem(MODEL_BUILDERS, registered, lambda **kwargs: (registered, kwargs))
    assert get_model(query, weights=None) == (registered, {"weights": None})


def test_summary_knows_a_short_detector_name_is_a_detector(capsys):
    # "d0" is EfficientDet-D0: --no-top is refused before anything is built (it used to be
    # passed to the detector builder as include_top=False).
    assert main(["summary", "d0", "--no-top"]) == 2
    assert "--no-top applies to classifiers" in capsys.readouterr().err


def test_variant_job_knows_a_short_detector_name_is_a_detector(monkeypatch, tmp_path):
    built = {}

    def fake_get_model(name, **kwargs):
        built.update(kwargs)
        raise RuntimeError("stop here")

    monkeypatch.setattr(jobs, "get_model", fake_get_model)
    with pytest.raises(RuntimeError, match="stop here"):
        jobs.variant_job("d0", weights=None, representative=tmp_path, num_classes=3)
    assert built == {"weights": None, "num_classes": 3}  # not classes=3
