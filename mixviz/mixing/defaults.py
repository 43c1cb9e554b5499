"""The mixing ratios the authors used: ``alpha`` of ``Beta(alpha, alpha)`` per policy.

Two tables, both from the authors' CIFAR-100 configs in OpenMixup (the DM
authors' codebase):

* the baselines (the policy with the mixup cross-entropy), under
  ``configs/classification/cifar100/mixups/basic``;
* the runs with the Decoupled Mixup loss, under
  ``configs/classification/cifar100/mixups/decouple/r18``: alpha 0.2 for every
  policy but Manifold Mixup (0.5).  On ImageNet the authors' DM runs use
  alpha 1 for every policy.

The loss settings of those DM runs are :func:`mixviz.losses.dm_defaults`.
"""

from __future__ import annotations

from mixviz._validation import check_choice

__all__ = ["CIFAR_ALPHA", "DM_ALPHA", "alpha_defaults"]

#: The authors' CIFAR-100 baseline alphas.
CIFAR_ALPHA = {"mixup": 1.0, "cutmix": 0.2, "fmix": 0.2, "resizemix": 1.0, "gridmix": 0.2,
               "saliencymix": 0.2, "puzzlemix": 1.0, "average": 1.0, "smoothmix": 0.2, "none": 1.0}
#: The authors' alphas with the DM loss on CIFAR-100 (0.2 for a policy not listed).
DM_ALPHA = {"manifold": 0.5}
_DM_ALPHA_OTHER = 0.2
_DM_ALPHA_IMAGENET = 1.0


def alpha_defaults(policy: str, *, with_dm: bool = False, dataset_kind: str = "cifar") -> float:
    """The ``alpha`` the authors used for ``policy``.

    ``with_dm=False``: the CIFAR-100 baseline (:data:`CIFAR_ALPHA`; 1.0 for a
    policy without a config there).  ``with_dm=True``: the alpha of the
    authors' DM runs, 0.2 on CIFAR (0.5 for ``manifold``) and 1.0 on
    ImageNet (``dataset_kind="imagenet"``).  Only the DM runs have an
    ImageNet table here; the baselines' ImageNet alphas raise ``ValueError``.
    """
    if not isinstance(policy, str):
        raise TypeError(f"policy must be a str, got {type(policy).__name__}")
    if not isinstance(with_dm, bool):
        raise TypeError(f"with_dm must be True or False, got {with_dm!r}")
    check_choice("dataset_kind", dataset_kind, ("cifar", "imagenet"))
    name = policy.lower()
    if with_dm:
        return _DM_ALPHA_IMAGENET if dataset_kind == "imagenet" else DM_ALPHA.get(name, _DM_ALPHA_OTHER)
    if dataset_kind == "imagenet":
        raise ValueError("alpha_defaults has the authors' ImageNet alpha for DM runs only (with_dm=True); "
                         "pass alpha to the policy for an ImageNet baseline")
    return CIFAR_ALPHA.get(name, 1.0)
