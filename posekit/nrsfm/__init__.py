"""Non-rigid structure from motion: 3D shapes from 2D landmarks with learned shape bases.

* :mod:`posekit.nrsfm.bases`: dictionaries of 3D shapes (CRA's sparse coding, MCM-RR's non-negative
  elastic net).
* :mod:`posekit.nrsfm.cra`: the convex relaxation (spectral-norm ALM) and its refinement.
* :mod:`posekit.nrsfm.mcm_rr`: MCM-RR's similarity constraint and the method switch
  (:func:`reconstruct` with "cra", "cra-en", "cra-sc" or "mcm-rr").
* :mod:`posekit.nrsfm.benchmark`, :mod:`posekit.nrsfm.plots`: the replication on motion capture.

Hyper-parameters live in ``defaults.yaml`` beside this file; docs/nrsfm.md explains each choice.
"""
from posekit.nrsfm.bases import (
    ShapeBases,
    learn_bases,
    learn_elastic_net_bases,
    learn_sparse_coding_bases,
    normalize_training_shapes,
)
from posekit.nrsfm.cra import Reconstruction, prox_spectral_norm, reconstruct_cra, synchronize_rotation
from posekit.nrsfm.mcm_rr import (
    METHODS,
    default_bases_parameters,
    default_parameters,
    reconstruct,
    reconstruct_mcm_rr,
    similarity_weights,
)

__all__ = [
    "METHODS",
    "Reconstruction",
    "ShapeBases",
    "default_bases_parameters",
    "default_parameters",
    "learn_bases",
    "learn_elastic_net_bases",
    "learn_sparse_coding_bases",
    "normalize_training_shapes",
    "prox_spectral_norm",
    "reconstruct",
    "reconstruct_cra",
    "reconstruct_mcm_rr",
    "similarity_weights",
    "synchronize_rotation",
]
