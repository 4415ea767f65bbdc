"""Least-squares SVMs (one-vs-rest ridge regression on +1/-1 targets) for a whole grid of C values from one Gram
matrix: the solver bow_svm uses for dense Fisher vectors, which have more features than images.

For each C the model minimises  sum_i v_i (t_i - w.x_i - b)^2 + |w|^2 / (2 C)  (v: sample weights; the squared
loss in place of LinearSVC's squared hinge, the same C scale). With more features than images its dual form is
cheaper: centre with the weighted means, then  (Xc Xc^T + diag(1 / (2 C v))) a = t,  w = Xc^T a,  b = t_mean -
mean.w. The Gram X X^T of all rows is computed once (float32, in blocks of rows) and shared by every C, each C
costing one float64 Cholesky factorisation of the fitted rows' block; scikit-learn's Ridge would recompute the
Gram per C and copy X to centre it. Rows outside `rows` (bow_svm's calibration images) are in the Gram but not
in the fit, so the features are never copied.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from joblib import Parallel, delayed
from scipy.linalg import cho_factor, cho_solve

#: rows and columns of the Gram computed per matrix product (gram_matrix), and rows copied from it to float64 at
#: a time
GRAM_BLOCK_ROWS = 2048


class LeastSquaresSVM:
    """A fitted one-vs-rest least-squares SVM: decision_function like LinearSVC's (one column for two classes)."""

    def __init__(self, C: float, classes: np.ndarray, coef: np.ndarray, intercept: np.ndarray):
        self.C = C
        self.classes_ = classes
        self.coef_ = coef
        self.intercept_ = intercept

    def decision_function(self, features: np.ndarray) -> np.ndarray:
        scores = features @ self.coef_.T + self.intercept_
        return scores[:, 0] if scores.shape[1] == 1 else scores


def gram_bytes(n_rows: int, n_fitted: int) -> int:
    """Memory least_squares_svms needs beside the features: the float32 Gram of all rows and one float64 factor
    of the fitted rows' block."""
    return 4 * n_rows * n_rows + 8 * n_fitted * n_fitted


def gram_matrix(features: np.ndarray, block_rows: int = GRAM_BLOCK_ROWS, n_jobs: int = 1) -> np.ndarray:
    """features @ features.T, computed block by block of the upper triangle on n_jobs threads (the lower triangle
    mirrored). Each product runs on the caller's BLAS threads (bow_svm: one). Not `features @ features.T` with
    several BLAS threads: the multi-threaded syrk and potrf of the OpenBLAS that NumPy's and SciPy's wheels bundle
    crashed the process (segmentation fault) on an AMD EPYC for 28,709 x 1,024 float32 faces (syrk; numpy/numpy
    #19685 reports the same) and a 16,000 x 16,000 Cholesky factorisation, single-threaded calls never did."""
    n = len(features)
    gram = np.empty((n, n), dtype=features.dtype)
    starts = range(0, n, block_rows)

    def block(row: int, column: int) -> None:
        gram[row:row + block_rows, column:column + block_rows] = \
            features[row:row + block_rows] @ features[column:column + block_rows].T
        if column != row:
            gram[column:column + block_rows, row:row + block_rows] = \
                gram[row:row + block_rows, column:column + block_rows].T

    Parallel(n_jobs=n_jobs, prefer="threads")(delayed(block)(row, column) for row in starts for column in starts
                                              if column >= row)
    return gram


def one_vs_rest_targets(labels: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """(n, classes) +1 for the image's class, -1 elsewhere; one column (+1 for classes[1]) for two classes."""
    targets = np.where(labels[:, None] == classes[None, :], 1.0, -1.0)
    return targets[:, 1:] if len(classes) == 2 else targets


def least_squares_svms(features: np.ndarray, labels: np.ndarray, Cs: Sequence[float], rows: np.ndarray,
                       sample_weight: np.ndarray | None = None, n_jobs: int = 1) -> list[LeastSquaresSVM]:
    """One LeastSquaresSVM per C in Cs, fitted on features[rows] (labels, sample_weight: of every row of
    features; rows with weight 0 are left out). The Gram's blocks are computed on n_jobs threads; BLAS threads
    are the caller's (see gram_matrix)."""
    rows = np.sort(np.asarray(rows))
    weights = np.ones(len(features)) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    rows = rows[weights[rows] > 0]
    weights = weights[rows]
    classes = np.unique(labels[rows])
    if len(classes) < 2:
        raise ValueError("a least-squares SVM needs training images of at least two classes")
    targets = one_vs_rest_targets(labels[rows], classes)

    # weighted means of the fitted rows: features and targets are centred through them (the intercept). Products
    # with all of `features` and zeros outside `rows`, so the (large) features are never copied.
    share = np.zeros(len(features))
    share[rows] = weights / weights.sum()
    mean = (share.astype(features.dtype) @ features).astype(np.float64)
    target_mean = share[rows] @ targets
    centred_targets = targets - target_mean
    gram = gram_matrix(features, n_jobs=n_jobs)  # float32, over all rows
    projections = (features @ mean.astype(features.dtype)).astype(np.float64)[rows]
    mean_norm = float(mean @ mean)

    models = []
    for C in Cs:
        system = np.empty((len(rows), len(rows)))
        for start in range(0, len(rows), GRAM_BLOCK_ROWS):
            system[start:start + GRAM_BLOCK_ROWS] = gram[rows[start:start + GRAM_BLOCK_ROWS]][:, rows]
        # (X - 1 mean^T)(X - 1 mean^T)^T = X X^T - p 1^T - 1 p^T + |mean|^2, p = X mean
        system -= projections[:, None]
        system -= projections[None, :]
        system += mean_norm
        system[np.diag_indices_from(system)] += 1.0 / (2.0 * float(C) * weights)
        # system.T: the same (exactly symmetric) matrix in Fortran order, which LAPACK factorises in place; the
        # C-ordered array would be copied first (another 5.3 GB on FER-2013)
        dual = cho_solve(cho_factor(system.T, lower=True, overwrite_a=True, check_finite=False), centred_targets,
                         check_finite=False)
        del system
        dual_all = np.zeros((len(features), dual.shape[1]), dtype=features.dtype)
        dual_all[rows] = dual
        coef = (dual_all.T @ features).astype(np.float64) - np.outer(dual.sum(axis=0), mean)
        intercept = target_mean - coef @ mean
        models.append(LeastSquaresSVM(float(C), classes, coef.astype(np.float32), intercept.astype(np.float32)))
    return models
