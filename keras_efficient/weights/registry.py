"""Where published weights live and how each file is verified (REFERENCE §1.4, §3.4).

Keras-applications files have published md5 sums. The TF checkpoints of the tpu/automl
projects have none: they are trusted on first download (size and sha256 recorded in the cache
manifest and checked on every reuse) unless the user pins a sha256 with :func:`pin_sha256`.
Set ``KERAS_EFFICIENT_WEIGHTS_MIRROR`` to a URL root (e.g. an internal server) to fetch every
file from ``<mirror>/<path of the original URL>`` instead of the original host.
"""

from __future__ import annotations

import dataclasses
import os
import urllib.parse

KERAS_APPLICATIONS_URL = "https://storage.googleapis.com/keras-applications/"
TPU_LITE_URL = "https://storage.googleapis.com/cloud-tpu-checkpoints/efficientnet/lite/"
MIRROR_ENV = "KERAS_EFFICIENT_WEIGHTS_MIRROR"

#: md5 of the keras.applications files: variant suffix -> (with top, no top).
KERAS_APPLICATIONS_MD5: dict[str, tuple[str, str]] = {
    "b0": ("902e53a9f72be733fc0bcb005b3ebbac", "50bc09e76180e00e4465e1a485ddc09d"),
    "b1": ("1d254153d4ab51201f1646940f018540", "74c4e6b3e1f6a1eea24c589628592432"),
    "b2": ("b15cce36ff4dcbd00b6dd88e7857a6ad", "111f8e2ac8aa800a7a99e3239f7bfb39"),
    "b3": ("ffd1fdc53d0ce67064dc6a9c7960ede0", "af6d107764bb5b1abb91932881670226"),
    "b4": ("18c95ad55216b8f92d7e70b3a046e2fc", "ebc24e6d6c33eaebbd558eafbeedf1ba"),
    "b5": ("ace28f2a6363774853a83a0b21b9421a", "38879255a25d3c92d5e44e04ae6cec6f"),
    "b6": ("165f6e37dce68623721b423839de8be5", "9ecce42647a20130c1f39a5d4cb75743"),
    "b7": ("8c03f828fec3ef71311cd463b6759d99", "cbcfe4450ddf6f3ad90b1b398090fe4a"),
}

_PINS: dict[str, str] = {}


@dataclasses.dataclass(frozen=True)
class WeightFile:
    """One downloadable file: its URL, cache file name, checksum and format.

    Example::

        entry = imagenet_weights("efficientnetb0", include_top=False)
        entry.filename, entry.md5, entry.resolved_url
    """

    url: str
    filename: str
    format: str  # "keras_h5" | "tf_checkpoint_tarball" | "json"
    md5: str | None = None
    sha256: str | None = None

    @property
    def resolved_url(self) -> str:
        """The URL to fetch, after applying ``KERAS_EFFICIENT_WEIGHTS_MIRROR``."""
        return resolve_url(self.url)

    @property
    def pinned_sha256(self) -> str | None:
        return self.sha256 or _PINS.get(self.filename)


def resolve_url(url: str) -> str:
    """Rewrite ``url`` onto the mirror named by ``KERAS_EFFICIENT_WEIGHTS_MIRROR``, if set.

    Example::

        os.environ["KERAS_EFFICIENT_WEIGHTS_MIRROR"] = "https://mirror.example/root"
        resolve_url("https://storage.googleapis.com/keras-applications/efficientnetb0.h5")
        # "https://mirror.example/root/keras-applications/efficientnetb0.h5"
    """
    mirror = os.environ.get(MIRROR_ENV)
    if not mirror:
        return url
    path = urllib.parse.urlsplit(url).path.lstrip("/")
    return mirror.rstrip("/") + "/" + path


def pin_sha256(filename: str, sha256: str) -> None:
    """Require ``filename`` (e.g. ``"efficientnet-lite0.tar.gz"``) to have this sha256.

    Example::

        pin_sha256("efficientnet-lite0.tar.gz", digest)  # 64 hex digits, checked on every use
    """
    digest = sha256.strip().lower()
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise ValueError(f"A sha256 pin must be 64 hex digits; received {sha256!r}.")
    _PINS[filename] = digest


def imagenet_weights(variant: str, include_top: bool) -> WeightFile:
    """The ImageNet weight file of ``variant`` (a scaling-table name such as ``efficientnetb0``).

    Example::

        imagenet_weights("efficientnetlite0", include_top=True).format  # "tf_checkpoint_tarball"
    """
    if variant.startswith("efficientnetlite"):
        number = variant.removeprefix("efficientnetlite")
        filename = f"efficientnet-lite{number}.tar.gz"
        return WeightFile(TPU_LITE_URL + filename, filename, "tf_checkpoint_tarball")
    suffix = variant.removeprefix("efficientnet")
    if suffix not in KERAS_APPLICATIONS_MD5:
        raise ValueError(
            f"No published ImageNet weights for {variant!r}; use weights=None or a path."
        )
    filename = f"{variant}{'' if include_top else '_notop'}.h5"
    md5 = KERAS_APPLICATIONS_MD5[suffix][0 if include_top else 1]
    return WeightFile(KERAS_APPLICATIONS_URL + filename, filename, "keras_h5", md5=md5)


IMAGENET_CLASS_INDEX = WeightFile(
    url="https://storage.googleapis.com/download.tensorflow.org/data/imagenet_class_index.json",
    filename="imagenet_class_index.json",
    format="json",
    md5="c2c37ea517e94d9795004a39431a14cb",
)


AUTOML_COCO_URL = "https://storage.googleapis.com/cloud-tpu-checkpoints/efficientdet/coco2/"
AUTOML_LITE_COCO_URL = "https://storage.googleapis.com/cloud-tpu-checkpoints/efficientdet/coco/"


def coco_weights(detector: str) -> WeightFile:
    """The official COCO checkpoint tarball of an EfficientDet row (``efficientdet-d0`` ...).

    Example::

        coco_weights("efficientdet-d0").url  # ".../efficientdet/coco2/efficientdet-d0.tar.gz"
    """
    if detector.startswith("efficientdet-lite"):
        filename = f"{detector}.tgz"
        return WeightFile(AUTOML_LITE_COCO_URL + filename, filename, "tf_checkpoint_tarball")
    if detector.startswith("efficientdet-d"):
        filename = f"{detector}.tar.gz"
        return WeightFile(AUTOML_COCO_URL + filename, filename, "tf_checkpoint_tarball")
    raise ValueError(f"No published COCO weights for {detector!r}; use weights=None or a path.")
