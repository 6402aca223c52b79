"""The one rule for variant names: any spelling -> (family, the table's canonical name).

A name is matched case-insensitively with ``-`` and ``_`` ignored; a family prefix is optional.
Without a family, classifier names win: ``"lite0"`` is EfficientNet-Lite0 and ``"d0"`` (no
classifier of that name) EfficientDet-D0; ``"efficientdet-lite0"`` names the detector.

===============  ==================================================================
family           canonical names (the keys of its table)
===============  ==================================================================
``efficientnet`` ``efficientnetb0`` .. ``efficientnetb7``, ``efficientnetlite0`` ..
                 (:data:`~keras_efficient.configs.efficientnet.EFFICIENTNET_VARIANTS`)
``efficientdet`` ``efficientdet-d0`` .. ``efficientdet-d7x``, ``efficientdet-lite0`` ..
                 (:data:`~keras_efficient.configs.efficientdet.EFFICIENTDET_VARIANTS`)
===============  ==================================================================

:func:`~keras_efficient.configs.efficientnet.get_efficientnet_scaling`,
:func:`~keras_efficient.configs.efficientdet.get_efficientdet_spec`,
:func:`keras_efficient.models.get_model`, the CLI and the export jobs all resolve through it.
"""

from __future__ import annotations

from collections.abc import Mapping

from keras_efficient.configs.efficientdet import EFFICIENTDET_VARIANTS
from keras_efficient.configs.efficientnet import EFFICIENTNET_VARIANTS

EFFICIENTNET = "efficientnet"
EFFICIENTDET = "efficientdet"
FAMILIES = (EFFICIENTNET, EFFICIENTDET)  # lookup order without a family: classifiers first

_TABLES: Mapping[str, Mapping[str, object]] = {
    EFFICIENTNET: EFFICIENTNET_VARIANTS,
    EFFICIENTDET: EFFICIENTDET_VARIANTS,
}
_LABELS = {EFFICIENTNET: "EfficientNet variant", EFFICIENTDET: "EfficientDet variant",
           None: "model"}


def _compact(name: str) -> str:
    return name.lower().replace("_", "").replace("-", "")


def _candidate(compact: str, family: str) -> str:
    """The canonical spelling ``compact`` would have in ``family``'s table."""
    if family == EFFICIENTNET:
        return compact if compact.startswith(EFFICIENTNET) else EFFICIENTNET + compact
    return f"{EFFICIENTDET}-{compact.removeprefix(EFFICIENTDET)}"


def known_variants(family: str | None = None) -> tuple[str, ...]:
    """The canonical names of ``family`` (both families' when None), in table order.

    Example::

        known_variants("efficientdet")[0]  # "efficientdet-d0"
    """
    return tuple(name for f in ((family,) if family else FAMILIES) for name in _TABLES[f])


def resolve_variant(name: str, family: str | None = None) -> tuple[str, str]:
    """``(family, canonical name)`` of a variant spelled any way; ``family`` restricts the
    search to ``"efficientnet"`` or ``"efficientdet"``.

    Raises ``ValueError`` naming the known variants when nothing matches.

    Example::

        resolve_variant("B4")                       # ("efficientnet", "efficientnetb4")
        resolve_variant("lite0")                    # ("efficientnet", "efficientnetlite0")
        resolve_variant("lite0", "efficientdet")    # ("efficientdet", "efficientdet-lite0")
        resolve_variant("EfficientDet_D7x")         # ("efficientdet", "efficientdet-d7x")
    """
    if family is not None and family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES} or None; received {family!r}.")
    compact = _compact(str(name))
    for candidate_family in (family,) if family else FAMILIES:
        candidate = _candidate(compact, candidate_family)
        if candidate in _TABLES[candidate_family]:
            return candidate_family, candidate
    raise ValueError(f"Unknown {_LABELS[family]} {name!r}; known: "
                     f"{', '.join(known_variants(family))}.")


def is_detector(name: str) -> bool:
    """Whether ``name`` resolves to an EfficientDet (see :func:`resolve_variant`).

    Example::

        is_detector("d0"), is_detector("lite0"), is_detector("efficientdet-lite0")
        # (True, False, True)
    """
    return resolve_variant(name)[0] == EFFICIENTDET
