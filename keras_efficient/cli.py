"""The ``keras-efficient`` command line: list, summary, classify, demo."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import numpy as np


def _quiet_tensorflow() -> None:
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def cmd_list(args: argparse.Namespace) -> int:
    """Print every variant with parameters and MACs, ours next to the published figures."""
    from keras_efficient.configs import EFFICIENTNET_VARIANTS
    from keras_efficient.models import get_model
    from keras_efficient.models.profile import count_macs

    header = (f"{'model':<20}{'input':>6}{'params':>13}{'MACs (ours)':>14}"
              f"{'MACs (paper)':>14}{'ratio':>7}{'top-1':>7}")
    print(header)
    print("-" * len(header))
    for name, row in EFFICIENTNET_VARIANTS.items():
        model = get_model(name, weights=None)
        macs = count_macs(model)
        print(f"{name:<20}{row.resolution:>6}{model.count_params():>13,}{macs / 1e9:>13.3f}B"
              f"{row.published_macs / 1e9:>13.3f}B{macs / row.published_macs:>7.3f}"
              f"{row.published_top1:>7.1f}", flush=True)
    return 0


def cmd_summary(args: argparse.Namespace) -> int:
    """Print a model's Keras summary, parameter count and MACs."""
    from keras_efficient.models import get_model
    from keras_efficient.models.profile import count_macs

    model = get_model(args.name, weights=None, include_top=not args.no_top)
    model.summary(line_length=110, expand_nested=False)
    print(f"{model.name}: {model.count_params():,} parameters, "
          f"{count_macs(model) / 1e9:.3f} B MACs at {model.input_shape[1:3]}")
    return 0


def _weights_arg(value: str) -> str | None:
    return None if value.lower() == "none" else value


def _load_image(path: str | None, size: int, seed: int) -> np.ndarray:
    from PIL import Image, ImageDraw

    if path:
        with Image.open(path) as image:
            rgb = image.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
            return np.asarray(rgb, dtype="float32")
    rng = np.random.default_rng(seed)
    canvas = Image.new("RGB", (size, size), tuple(int(v) for v in rng.integers(0, 255, 3)))
    draw = ImageDraw.Draw(canvas)
    for _ in range(6):
        x0, y0 = (int(v) for v in rng.integers(0, size * 3 // 4, 2))
        extent = int(rng.integers(size // 8, size // 3))
        fill = tuple(int(v) for v in rng.integers(0, 255, 3))
        box = (x0, y0, x0 + extent, y0 + extent)
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=fill)
    return np.asarray(canvas, dtype="float32")


def cmd_classify(args: argparse.Namespace) -> int:
    """Classify one image (or a generated one) and print the top-5."""
    from keras_efficient.models import get_model

    weights = _weights_arg(args.weights)
    model = get_model(args.model, weights=weights)
    size = int(model.input_shape[1])
    image = _load_image(args.image, size, args.seed)
    source = args.image or f"a generated {size}x{size} image (seed {args.seed})"
    probabilities = model.predict(image[None], verbose=0)[0]
    print(f"{model.name}: {model.count_params():,} parameters, input {size}x{size}, "
          f"weights: {weights or 'random (weights=None)'}")
    print(f"top-5 for {source}:")
    if weights == "imagenet" and probabilities.shape == (1000,):
        from keras_efficient.models.imagenet import decode_predictions

        for rank, (wnid, label, score) in enumerate(
                decode_predictions(probabilities[None], top=5)[0], start=1):
            print(f"  {rank}. {label:<28} ({wnid}) p={score:.4f}")
        return 0
    for rank, index in enumerate(np.argsort(probabilities)[::-1][:5], start=1):
        print(f"  {rank}. class {index:>4}  p={probabilities[index]:.4f}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """The offline main job: build a model, classify a generated image, print the top-5."""
    args.image = None
    return cmd_classify(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="keras-efficient", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("list", help="all variants with params, MACs and input size"
                   ).set_defaults(func=cmd_list)

    summary = sub.add_parser("summary", help="the Keras summary of one variant")
    summary.add_argument("name", help="variant, e.g. b0, efficientnetb4, lite0")
    summary.add_argument("--no-top", action="store_true", help="without the classifier")
    summary.set_defaults(func=cmd_summary)

    for command, helptext, func in (
        ("classify", "classify an image", cmd_classify),
        ("demo", "offline demo: classify a generated image", cmd_demo),
    ):
        p = sub.add_parser(command, help=helptext)
        p.add_argument("--model", default="b0", help="variant name (default b0)")
        p.add_argument("--weights", default="none" if command == "demo" else "imagenet",
                       help="'imagenet', 'none' or a weights file")
        p.add_argument("--seed", type=int, default=0, help="seed of the generated image")
        if command == "classify":
            p.add_argument("image", nargs="?", type=str, help="image file (default: generated)")
        p.set_defaults(func=func)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``keras-efficient`` console script."""
    _quiet_tensorflow()
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (ValueError, OSError) as error:
        print(f"keras-efficient: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
