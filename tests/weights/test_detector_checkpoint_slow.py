"""D7x (P3–P8) checkpoint names: every variable lands where its name says (slow tier)."""

import numpy as np
import pytest

from keras_efficient.configs.efficientdet import EFFICIENTDET_VARIANTS
from keras_efficient.models.efficientdet import EfficientDet
from keras_efficient.weights.detector_checkpoint import efficientdet_name_map
from tests.helpers import save_name_based_checkpoint

D7X = EFFICIENTDET_VARIANTS["efficientdet-d7x"]

#: P3–P8 has 6 input levels, so node n's ops are suffixed 6 + n (REFERENCE §3.3).
OFFICIAL_D7X = {
    "fpn_cells/cell_0/fnode0/op_after_combine6/conv/depthwise_kernel": ("fpn_cell0_node0_conv", 0),
    "fpn_cells/cell_7/fnode9/op_after_combine15/bn/gamma": ("fpn_cell7_node9_bn", 0),
    "fpn_cells/cell_0/fnode2/resample_0_2_8/conv2d/kernel":
        ("fpn_cell0_node2_resample_0_2_conv", 0),
    "class_net/class-4-bn-8/moving_mean": ("class_net_bn4_p8", 2),
    "box_net/box-predict/pointwise_kernel": ("box_net_predict", 1),
    "efficientnet-b7/blocks_54/conv2d_1/kernel": ("block7d_project_conv", 0),
}


@pytest.mark.slow
def test_d7x_checkpoint_lands_by_name(tmp_path):
    model = EfficientDet(D7X)
    name_map = efficientdet_name_map(D7X)
    flat = {}
    for layer_name, sources in name_map.items():
        for index, source in enumerate(sources):
            shape = model.get_layer(layer_name).weights[index].shape
            for j, name in enumerate((source,) if isinstance(source, str) else source):
                flat[name] = (layer_name, index, j, () if not isinstance(source, str) else shape)
    for name, (layer, index) in OFFICIAL_D7X.items():
        assert flat[name][:2] == (layer, index), name
    assert "fpn_cells/cell_0/fnode0/WSM" not in flat  # D7x fuses by plain sum
    rng = np.random.default_rng(7)
    values = {name: rng.normal(size=shape).astype("float32")
              for name, (_, _, _, shape) in flat.items()}
    prefix = save_name_based_checkpoint(tmp_path / "model.ckpt", values)
    loaded = EfficientDet(D7X, weights=prefix)
    for name, (layer, index, _, _) in flat.items():
        np.testing.assert_array_equal(loaded.get_layer(layer).weights[index].numpy(),
                                      values[name], err_msg=name)
