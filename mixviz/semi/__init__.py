"""Semi-supervised training: FixMatch, and FixMatch with mixup and the
Decoupled Mixup (DM) loss on mixed labelled and pseudo-labelled pairs (the DM
authors' "DMixMatch").

:func:`mixviz.train.fit` hands a run to this package when its config sets
``labels_per_class`` (and ``semi``)::

    TrainConfig(dataset="clutter", labels_per_class=4, semi="fixmatch",   # FixMatch
                policy="mixup", loss="dm",                                 # + mixup with DM
                loss_options=dict(eta=1.0, mode="both", lam_power=1.0))

The training split is cut by :func:`mixviz.data.subsets.labelled_subset`
into ``labels_per_class`` labelled images per class (drawn by the run's seed)
and the rest, whose labels are never handed to the training step.  Every
step takes ``B = batch_size`` labelled images ``x_l`` with labels ``y`` and
``mu * B`` unlabelled images ``x_u`` and minimises

    L = CE(f(weak(x_l)), y)                                          supervised
      + lambda_u * mean_u [q_u >= tau] CE(f(strong(x_u)), p_u)        FixMatch
      + mean_i mix(f(lam x_l,i + (1 - lam) x_l,perm(i)); y_i, y_perm(i), lam)    L x L
      + w(t) * sum_i [q_i >= tau] mix(f(lam' x_l,i + (1 - lam') weak(x_u)_i); y_i, p_i, lam') / B   L x U

with ``p_u = argmax softmax(g(weak(x_u)))`` and ``q_u`` its probability (the
teacher ``g`` is the student ``f`` or its EMA, no gradient), ``lam, lam' =
max(l, 1 - l)``, ``l ~ Beta(alpha, alpha)`` (the labelled image's share is
at least 1/2), ``mix`` the run's loss (``"mixup_ce"`` or ``"dm"``) and
``w(t) = (1 - cos(pi t / T)) / 2`` over the ``T`` steps of the run.  The
mixed terms exist with ``policy="mixup"`` only; ``semi="none"`` keeps only
the supervised terms (supervised-only on the labelled subset, with the same
labelled batches and number of steps as the semi-supervised runs).

Weak augmentation: the existing random crop (zero padding of ``round(H/8)``
px, FixMatch's 1/8 of the side) and flip.  Strong augmentation:
:func:`mixviz.augment.strong_augment` (RandAugment, 3 operations at full
magnitude, each firing with probability 1/2, then Cutout of ``H/8`` px:
the authors' 4 px at 32 px) on an independently cropped copy.

Per epoch the history gets ``mask_rate`` (the share of unlabelled images
whose pseudo-label is kept), ``pseudo_acc`` (the accuracy of the kept
pseudo-labels against the true labels, which only the measuring side sees),
``pseudo_acc_all`` and ``unsup_weight`` (``w(t)``).

Choices the paper's text leaves open, and where this differs from the
authors' code (openmixup ``models/semisup/dmixmatch.py`` and its CIFAR-100
config):

* Teacher: ``teacher="ema"`` (the authors': pseudo-labels from an EMA of the
  parameters, run in train mode with its own BatchNorm statistics) or
  ``"student"`` (the FixMatch paper: the student's own weak-view logits).
  The EMA momentum is the constant ``ema_momentum``; the authors ramp it from
  0.999 to 0.99999 over about 89k steps, which would leave the teacher near
  its initial weights over the few thousand steps of a CPU run.
* One forward pass over all the step's images (labelled, strong, weak when
  the student is the teacher, and both mixed batches), so BatchNorm sees the
  whole step as in FixMatch's code; the authors run separate passes.
* One classifier head.  The authors train the mixed terms through a second
  linear head on the same features (and test with the EMA's own head); the
  mixviz models have one head, so the mixed terms train it too.  Their early
  detach of the mixed features (while ``w < 1e-3``) needs that second head
  and is left out; the L x U term is skipped while ``w <= 1e-5`` as theirs.
* ``lam``: one draw per mixed term and step (the L x L and L x U terms draw
  their own); L x U pairs image ``i`` of the labelled batch with image ``i``
  of the weak unlabelled batch, as in the authors' code.
* The L x U mask is ``[q >= tau]``: the authors' ``min(tau, max(0.95,
  1 - lam))`` equals ``tau`` with their defaults.  The divisor stays ``B``.
* The DM setting of the authors' DMixMatch is ``eta = 1``, ``mode="both"``,
  ``lam_power = 1`` (pass it in ``loss_options``; the ``semi`` preset does).
  They skip the decoupled terms when ``lam`` is exactly 1/2; here it is kept
  (a draw of exactly 1/2 has probability 0).
* Unlabelled images: the rest of the training split (the authors' pool is
  the whole training set, labelled images included).  An epoch is one pass
  over them; the labelled subset repeats as needed.
* Test accuracy is the student's (the authors test the EMA).
* Optimiser and schedule are the run's (:class:`mixviz.train.TrainConfig`).
"""

from mixviz.config import SEMI_FIELDS, SEMI_MODES, TEACHERS, is_semi
from mixviz.config import check_semi_fields as check_config
from mixviz.semi.core import consistency_loss, labelled_dominant, pseudo_labels, ramp_up
from mixviz.semi.training import HISTORY_COLUMNS, PseudoLabelMonitor, SemiBatches, SemiTraining

__all__ = [
    "SEMI_MODES",
    "TEACHERS",
    "SEMI_FIELDS",
    "HISTORY_COLUMNS",
    "pseudo_labels",
    "consistency_loss",
    "ramp_up",
    "labelled_dominant",
    "is_semi",
    "check_config",
    "SemiBatches",
    "PseudoLabelMonitor",
    "SemiTraining",
]
