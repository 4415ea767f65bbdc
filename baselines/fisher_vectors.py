"""Improved Fisher vectors (Perronnin, Sanchez & Mensink 2010) of dense descriptors, per spatial-pyramid region,
for a batch of images at once.

A Fisher vector describes an image's descriptors by the gradient of a diagonal Gaussian mixture's log-likelihood
with respect to its weights, means and variances: for K Gaussians and d-dimensional descriptors, K + 2Kd numbers
per region instead of a K-bin histogram: how the descriptors sit around each Gaussian, not only how many fall
nearest to it. "Improved": each region's vector is power-normalised (signed square root) and L2-normalised.

`fisher_vectors` computes, for every region of every image, exactly what `skimage.feature.fisher_vector(region's
descriptors, gmm, improved=True)` computes (tests/test_bow_svm.py checks it), but for a batch of images with
matrix products: the posteriors come from the Mahalanobis distances written as products
(|x|^2/s^2 - 2 x.mu/s^2 + |mu|^2/s^2), and each region's posterior-weighted first and second moments are one
batched product of its descriptors' posteriors with them; nothing of size images x descriptors x K x d is
materialised. skimage's function does one image and one region per call.
"""

from __future__ import annotations

import numpy as np
from sklearn.mixture import GaussianMixture


def fisher_vector_length(n_components: int, dimension: int) -> int:
    return n_components * (1 + 2 * dimension)


def _posteriors(x: np.ndarray, gmm: GaussianMixture) -> np.ndarray:
    """(n, P, K) posterior probability of each Gaussian for each descriptor (as gmm.predict_proba)."""
    precisions = 1.0 / gmm.covariances_  # (K, d)
    squared = (x * x) @ precisions.T - 2.0 * (x @ (gmm.means_ * precisions).T)
    squared += np.sum(gmm.means_ ** 2 * precisions, axis=1)
    log_p = np.log(gmm.weights_) - 0.5 * np.sum(np.log(gmm.covariances_), axis=1) - 0.5 * squared
    log_p -= log_p.max(axis=-1, keepdims=True)
    posteriors = np.exp(log_p)
    posteriors /= posteriors.sum(axis=-1, keepdims=True)
    return posteriors


def fisher_vectors(descriptors: np.ndarray, gmm: GaussianMixture, regions: np.ndarray,
                   region_weights: np.ndarray, power: bool = True) -> np.ndarray:
    """(n, regions x (K + 2Kd)) float32 improved Fisher vectors of a batch (power=False: without the power
    normalisation, L2 only), one per region, each scaled by the square root of its region's weight (so a linear
    kernel weighs the pyramid's regions as the histograms' does; a region without descriptors contributes zeros).

    descriptors: (n, P, d), already projected as the mixture was fitted; regions: (levels, P) region index of
    each descriptor at each pyramid level and region_weights: (regions,), both from spatial_pyramid.pyramid_regions."""
    x = descriptors.astype(np.float64, copy=False)
    n, _, dimension = x.shape
    weights, means, variances = gmm.weights_, gmm.means_, gmm.covariances_
    posteriors = _posteriors(x, gmm)  # (n, P, K)
    n_regions, n_components = len(region_weights), posteriors.shape[2]
    both = np.concatenate([x, x * x], axis=2)  # (n, P, 2d): the first and second moments in one product
    # per region: mean posterior (n, R, K), mean posterior-weighted x and x^2 (n, R, K, 2d); region by region on
    # its own descriptors (a product over all descriptors with zero weights outside the region would do the work
    # once per region instead of once per pyramid level)
    pp_sum = np.zeros((n, n_regions, n_components))
    moments = np.zeros((n, n_regions, n_components, 2 * dimension))
    counts = np.zeros(n_regions)
    for region in range(n_regions):
        members = np.flatnonzero((regions == region).any(axis=0))
        if len(members) == 0:
            continue
        counts[region] = len(members)
        region_posteriors = posteriors[:, members, :]
        pp_sum[:, region] = region_posteriors.sum(axis=1) / len(members)
        moments[:, region] = np.matmul(region_posteriors.transpose(0, 2, 1), both[:, members, :]) / len(members)
    pp_x, pp_x2 = moments[..., :dimension], moments[..., dimension:]
    d_pi = (pp_sum - weights) / np.sqrt(weights)
    d_mu = (pp_x - pp_sum[..., None] * means) / (np.sqrt(weights)[:, None] * np.sqrt(variances))
    d_sigma = (-pp_x2 - pp_sum[..., None] * means ** 2 + pp_sum[..., None] * variances + 2 * pp_x * means) / (
        np.sqrt(2.0) * np.sqrt(weights)[:, None] * variances)
    vectors = np.concatenate([d_pi, d_mu.reshape(n, n_regions, -1), d_sigma.reshape(n, n_regions, -1)], axis=2)
    if power:
        vectors = np.sign(vectors) * np.sqrt(np.abs(vectors))
    norms = np.linalg.norm(vectors, axis=2, keepdims=True)
    vectors = np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)
    vectors *= np.sqrt(region_weights)[None, :, None]
    vectors[:, counts == 0] = 0.0
    return vectors.reshape(n, -1).astype(np.float32)


__all__ = ["fisher_vector_length", "fisher_vectors"]
