"""EfficientNet scaling tables (B0–B7, Lite0–4), the B0 stage table and the rounding rules.

Compound scaling multiplies the B0 network's filters by ``width`` and its per-stage repeats by
``depth``; ``resolution`` is the default input size. The numbers are the published ones
(REFERENCE §1), not the paper's closed-form approximations.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

IMAGENET_MEAN_RGB: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD_RGB: tuple[float, float, float] = (0.229, 0.224, 0.225)


@dataclasses.dataclass(frozen=True)
class StageSpec:
    """One stage of MBConv blocks, as in the B0 table (before scaling).

    Example::

        B0_STAGES[1]  # StageSpec(kernel_size=3, repeats=2, filters_in=16, filters_out=24, ...)
    """

    kernel_size: int
    repeats: int
    filters_in: int
    filters_out: int
    expand_ratio: int
    strides: int
    se_ratio: float


B0_STAGES: tuple[StageSpec, ...] = (
    StageSpec(kernel_size=3, repeats=1, filters_in=32, filters_out=16, expand_ratio=1, strides=1,
              se_ratio=0.25),
    StageSpec(kernel_size=3, repeats=2, filters_in=16, filters_out=24, expand_ratio=6, strides=2,
              se_ratio=0.25),
    StageSpec(kernel_size=5, repeats=2, filters_in=24, filters_out=40, expand_ratio=6, strides=2,
              se_ratio=0.25),
    StageSpec(kernel_size=3, repeats=3, filters_in=40, filters_out=80, expand_ratio=6, strides=2,
              se_ratio=0.25),
    StageSpec(kernel_size=5, repeats=3, filters_in=80, filters_out=112, expand_ratio=6, strides=1,
              se_ratio=0.25),
    StageSpec(kernel_size=5, repeats=4, filters_in=112, filters_out=192, expand_ratio=6, strides=2,
              se_ratio=0.25),
    StageSpec(kernel_size=3, repeats=1, filters_in=192, filters_out=320, expand_ratio=6, strides=1,
              se_ratio=0.25),
)

STEM_FILTERS = 32
HEAD_FILTERS = 1280
DEPTH_DIVISOR = 8


@dataclasses.dataclass(frozen=True)
class EfficientNetScaling:
    """One row of the compound-scaling table.

    ``lite`` selects the EfficientNet-Lite rules: no squeeze-excite, ReLU6, stem and head
    filters not scaled, first and last stage repeats not scaled, (x - 127) / 128 preprocessing.
    ``published_*`` are the reference figures the tests and ``keras-efficient list`` compare with.

    Example::

        b4 = EFFICIENTNET_VARIANTS["efficientnetb4"]  # width 1.4, depth 1.8, resolution 380
        narrow = b4.with_(width=1.0, name="b4_narrow")  # a custom row for EfficientNet(...)
    """

    name: str
    width: float
    depth: float
    resolution: int
    dropout: float
    lite: bool = False
    drop_connect: float = 0.2
    published_macs: float = 0.0
    published_top1: float = 0.0

    @property
    def activation(self) -> str:
        return "relu6" if self.lite else "swish"

    @property
    def se_enabled(self) -> bool:
        return not self.lite

    @property
    def stem_filters(self) -> int:
        return STEM_FILTERS if self.lite else round_filters(STEM_FILTERS, self.width)

    @property
    def head_filters(self) -> int:
        return HEAD_FILTERS if self.lite else round_filters(HEAD_FILTERS, self.width)

    @property
    def mean_rgb(self) -> tuple[float, float, float]:
        """Per-channel mean of the in-graph normalization, in raw [0, 255] pixels: 127 for
        Lite, ImageNet mean × 255 otherwise (automl's ``mean_rgb``). Normalization maps it to
        0, so it is the letterbox pad value (automl pads 0 after normalizing).

        Example::

            get_efficientnet_scaling("lite0").mean_rgb  # (127.0, 127.0, 127.0)
        """
        if self.lite:
            return (127.0, 127.0, 127.0)
        red, green, blue = (255.0 * m for m in IMAGENET_MEAN_RGB)
        return (red, green, blue)

    @property
    def checkpoint_scope(self) -> str:
        """The variable-name prefix of the official TF checkpoints (REFERENCE §3.3)."""
        return self.name.replace("efficientnet", "efficientnet-")

    def with_(self, **changes: object) -> EfficientNetScaling:
        """A copy with some fields changed, for custom scalings."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


def round_filters(filters: float, width: float, divisor: int = DEPTH_DIVISOR) -> int:
    """Scale ``filters`` by ``width`` and round to the nearest multiple of ``divisor``.

    Never below ``divisor``; if rounding down lost more than 10% of the scaled value, add one
    ``divisor`` (the reference rule every published weight file follows).

    Example::

        round_filters(32, 1.4)  # 48
    """
    scaled = filters * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * scaled:
        rounded += divisor
    return int(rounded)


def round_repeats(repeats: int, depth: float) -> int:
    """Scale a stage's block count by ``depth``, rounding up.

    Example::

        round_repeats(3, 1.8)  # 6
    """
    return math.ceil(depth * repeats)


def scaled_stages(scaling: EfficientNetScaling) -> tuple[StageSpec, ...]:
    """The B0 stage table with filters and repeats scaled for ``scaling``.

    Example::

        [s.repeats for s in scaled_stages(get_efficientnet_scaling("b4"))]  # [2, 4, 4, 6, ...]
    """
    stages = []
    last = len(B0_STAGES) - 1
    for index, stage in enumerate(B0_STAGES):
        fixed_repeats = scaling.lite and index in (0, last)
        stages.append(
            dataclasses.replace(
                stage,
                repeats=stage.repeats if fixed_repeats else round_repeats(stage.repeats,
                                                                          scaling.depth),
                filters_in=round_filters(stage.filters_in, scaling.width),
                filters_out=round_filters(stage.filters_out, scaling.width),
                se_ratio=stage.se_ratio if scaling.se_enabled else 0.0,
            )
        )
    return tuple(stages)


def _row(name: str, width: float, depth: float, resolution: int, dropout: float,
         macs: float, top1: float, lite: bool = False) -> EfficientNetScaling:
    return EfficientNetScaling(name=name, width=width, depth=depth, resolution=resolution,
                               dropout=dropout, lite=lite, published_macs=macs,
                               published_top1=top1)


EFFICIENTNET_VARIANTS: Mapping[str, EfficientNetScaling] = {
    row.name: row
    for row in (
        _row("efficientnetb0", 1.0, 1.0, 224, 0.2, 0.39e9, 77.1),
        _row("efficientnetb1", 1.0, 1.1, 240, 0.2, 0.70e9, 79.1),
        _row("efficientnetb2", 1.1, 1.2, 260, 0.3, 1.0e9, 80.1),
        _row("efficientnetb3", 1.2, 1.4, 300, 0.3, 1.8e9, 81.6),
        _row("efficientnetb4", 1.4, 1.8, 380, 0.4, 4.2e9, 82.9),
        _row("efficientnetb5", 1.6, 2.2, 456, 0.4, 9.9e9, 83.6),
        _row("efficientnetb6", 1.8, 2.6, 528, 0.5, 19e9, 84.0),
        _row("efficientnetb7", 2.0, 3.1, 600, 0.5, 37e9, 84.3),
        _row("efficientnetlite0", 1.0, 1.0, 224, 0.2, 407e6, 75.1, lite=True),
        _row("efficientnetlite1", 1.0, 1.1, 240, 0.2, 631e6, 76.7, lite=True),
        _row("efficientnetlite2", 1.1, 1.2, 260, 0.3, 899e6, 77.6, lite=True),
        _row("efficientnetlite3", 1.2, 1.4, 280, 0.3, 1.44e9, 79.8, lite=True),
        _row("efficientnetlite4", 1.4, 1.8, 300, 0.3, 2.64e9, 81.5, lite=True),
    )
}


def get_efficientnet_scaling(name: str) -> EfficientNetScaling:
    """Look up a row by name (``"efficientnetb4"``, ``"b4"``, ``"lite0"``; case-insensitive).

    The name rule is :func:`keras_efficient.configs.names.resolve_variant`'s.

    Example::

        get_efficientnet_scaling("Lite0").lite  # True
    """
    from keras_efficient.configs.names import resolve_variant  # names reads this table

    return EFFICIENTNET_VARIANTS[resolve_variant(name, "efficientnet")[1]]


@dataclasses.dataclass(frozen=True)
class BlockSpec:
    """One MBConv block after scaling, with its keras.applications-compatible name prefix.

    Example::

        block = expand_blocks(get_efficientnet_scaling("b0"))[1]  # block2a_, stride 2, 16 -> 24
    """

    name: str
    stage: int
    index: int
    kernel_size: int
    filters_in: int
    filters_out: int
    expand_ratio: int
    strides: int
    se_ratio: float
    drop_rate: float
    #: The pyramid level whose feature this block's output is (the last block of a stage in
    #: :data:`FEATURE_LEVEL_STAGES`), else None; set by :func:`expand_blocks`.
    feature_level: int | None = None

    @property
    def has_residual(self) -> bool:
        return self.strides == 1 and self.filters_in == self.filters_out

    @property
    def output_name(self) -> str:
        """Name of the block's last layer (``{name}add`` with a residual, else
        ``{name}project_bn``), the layer :func:`feature_layer_names` taps."""
        return self.name + ("add" if self.has_residual else "project_bn")


#: Pyramid level -> the stage whose last block is that level's feature (REFERENCE §2.2).
FEATURE_LEVEL_STAGES: Mapping[int, int] = {1: 1, 2: 2, 3: 3, 4: 5, 5: 7}
_LEVEL_OF_STAGE: Mapping[int, int] = {stage: level
                                      for level, stage in FEATURE_LEVEL_STAGES.items()}


def expand_blocks(scaling: EfficientNetScaling) -> tuple[BlockSpec, ...]:
    """Every block of the scaled network in construction order.

    ``index`` is the global block counter (the ``blocks_{k}`` of official checkpoints);
    ``drop_rate`` is the linearly increasing stochastic-depth rate of the reference;
    ``feature_level`` marks the last block of each stage in :data:`FEATURE_LEVEL_STAGES` (the
    one rule for where the pyramid features are tapped: the backbone body, the layer names of
    :func:`feature_layer_names` and the BiFPN input widths all read it).

    Example::

        len(expand_blocks(get_efficientnet_scaling("b0")))  # 16
    """
    stages = scaled_stages(scaling)
    total = float(sum(stage.repeats for stage in stages))
    blocks: list[BlockSpec] = []
    for stage_number, stage in enumerate(stages, start=1):
        for repeat in range(stage.repeats):
            first = repeat == 0
            blocks.append(
                BlockSpec(
                    name=f"block{stage_number}{chr(ord('a') + repeat)}_",
                    stage=stage_number,
                    index=len(blocks),
                    kernel_size=stage.kernel_size,
                    # The first block reads the stem, whose width Lite keeps fixed at 32.
                    filters_in=(scaling.stem_filters if not blocks
                                else stage.filters_in if first else stage.filters_out),
                    filters_out=stage.filters_out,
                    expand_ratio=stage.expand_ratio,
                    strides=stage.strides if first else 1,
                    se_ratio=stage.se_ratio,
                    drop_rate=scaling.drop_connect * len(blocks) / total,
                    feature_level=(_LEVEL_OF_STAGE.get(stage_number)
                                   if repeat == stage.repeats - 1 else None),
                )
            )
    return tuple(blocks)


def feature_blocks(scaling: EfficientNetScaling) -> dict[int, BlockSpec]:
    """Pyramid level -> the block whose output is that level's feature (``feature_level``).

    Example::

        feature_blocks(get_efficientnet_scaling("b0"))[5].filters_out  # 320
    """
    return {block.feature_level: block for block in expand_blocks(scaling)
            if block.feature_level is not None}


def feature_layer_names(scaling: EfficientNetScaling) -> dict[int, str]:
    """Pyramid level -> name of the layer whose output is that level's feature.

    Example::

        feature_layer_names(get_efficientnet_scaling("b0"))[3]  # "block3b_add"
    """
    return {level: block.output_name for level, block in feature_blocks(scaling).items()}
