"""HOG features + RBF-kernel SVM, with probabilities from a held-out calibration.

Pipeline: HOG at three cell sizes (features.hog_features) -> per-feature standardisation -> PCA to 100
dimensions (as accurate on PublicTest as 200 or 400, and it makes every kernel evaluation cheaper) ->
scikit-learn SVC (RBF) -> a multinomial logistic regression on the SVC's one-vs-one decision values that
turns them into probabilities.

Why not SVC(probability=True): it runs an internal 5-fold cross-validation, i.e. five more SVM fits, which
on FER-2013's 28,709 images costs several times the fit itself. Instead a stratified, seeded
`calibration_fraction` (10%) of the training images is kept out of the SVM fit and used to fit the
calibration (Platt's held-out variant, extended to several classes). predict_proba comes from the
calibration, and predict is its argmax.

C and gamma are chosen on the validation data (PublicTest) from a small grid, by the accuracy of the
calibrated prediction (the model as it will predict). Each grid point is a full SVM fit, so on large inputs
the grid is fitted on a stratified subsample of the training images (`grid_subsample`), two points at a
time in threads (libsvm releases the GIL); the chosen setting is then refitted on all the SVM's training
images. Nothing is ever fitted on the validation data.

On FER-2013 7-class (class-weighted, 2 shared cores) the default fit takes about 3 minutes and reaches
~57% PrivateTest accuracy.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
from joblib import Parallel, delayed
from sklearn.decomposition import PCA
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from sklearn.utils.validation import check_is_fitted
from threadpoolctl import threadpool_limits

from fer_bench.data.dataset import check_images
from fer_bench.models.base import SklearnImageClassifier
from fer_bench.validation import check_estimator_parameters, check_values

from .features import (
    CELL_SIZES,
    CELLS_PER_BLOCK,
    ORIENTATIONS,
    TRANSFORM_SQRT,
    check_labels_and_weights,
    hog_features,
    split_validation,
)
from .svm_calibration import calibrate_and_score, decision_matrix

# The grid, from FER-2013 PublicTest accuracy: C=1 trails C=3 by 2-3 points and C=3 and 10 tie on 10,000
# images; gamma_scale 1.5-2.5 is a plateau, 1 is ~2 points and 4 ~7 points worse. gamma = gamma_scale *
# scikit-learn's gamma="scale", i.e. gamma_scale / (n_features * variance of the inputs).
DEFAULT_CS = (3.0, 10.0)
DEFAULT_GAMMA_SCALES = (1.0, 2.0)
QUICK_PARAMS = {"Cs": (1.0, 10.0), "gamma_scales": (1.0,), "n_components": 50, "grid_subsample": 1000}


def _fit_svc(features, labels, sample_weight, C, gamma, cache_size) -> SVC:
    return SVC(C=C, kernel="rbf", gamma=gamma, cache_size=cache_size,
               decision_function_shape="ovo").fit(features, labels, sample_weight=sample_weight)


def _fit_and_score(svm_data, calibration_data, validation_data, C, gamma, cache_size):
    """One grid point: SVC on svm_data, its calibration, and the calibrated accuracy on validation_data
    (the accuracy of the model as it would predict). Each *_data is (features, labels[, sample_weight])."""
    return calibrate_and_score(_fit_svc(*svm_data, C=C, gamma=gamma, cache_size=cache_size), calibration_data,
                               validation_data)


class HogSVMClassifier(SklearnImageClassifier):
    """HOG + PCA + RBF SVC with calibrated probabilities; C and gamma chosen on the validation data.

    Parameters
    ----------
    orientations, cell_sizes, cells_per_block, transform_sqrt : HOG settings (see features.hog_features).
    n_components : PCA dimensions fed to the SVM (None: no PCA).
    Cs, gamma_scales : the grid; gamma is gamma_scale / (n_features * input variance).
    grid_subsample : at most this many training images (stratified) fit each grid point; None: all.
    calibration_fraction : share of the training images kept out of the SVM to fit the probabilities.
    validation_fraction : share of the training images held out for the choice when fit gets no
        validation_data.
    cache_size : libsvm kernel cache per fit, MB.
    n_jobs : threads for HOG extraction and the grid (None: all cores).
    verbose : progress bar while extracting HOG from large inputs.
    random_state : seed for the splits, the subsample and the PCA.

    After fit: classes_, scaler_, pca_, svc_, calibrator_, selected_params_ (chosen C and gamma, the
    validation accuracy of the final model and the whole grid), validation_scores_ (the grid, each with
    its validation accuracy), timings_ (seconds per stage).
    """

    def __init__(self, orientations: int = ORIENTATIONS, cell_sizes: Sequence[int] = CELL_SIZES,
                 cells_per_block: int = CELLS_PER_BLOCK, transform_sqrt: bool = TRANSFORM_SQRT,
                 n_components: int | None = 100,
                 Cs: Sequence[float] = DEFAULT_CS, gamma_scales: Sequence[float] = DEFAULT_GAMMA_SCALES,
                 grid_subsample: int | None = 10000, calibration_fraction: float = 0.1,
                 validation_fraction: float = 0.1, cache_size: float = 1000, n_jobs: int | None = None,
                 verbose: bool = True, random_state=0):
        self.orientations = orientations
        self.cell_sizes = cell_sizes
        self.cells_per_block = cells_per_block
        self.transform_sqrt = transform_sqrt
        self.n_components = n_components
        self.Cs = Cs
        self.gamma_scales = gamma_scales
        self.grid_subsample = grid_subsample
        self.calibration_fraction = calibration_fraction
        self.validation_fraction = validation_fraction
        self.cache_size = cache_size
        self.n_jobs = n_jobs
        self.verbose = verbose
        self.random_state = random_state

    def check_parameters(self) -> None:
        """ValueError (scikit-learn's InvalidParameterError for the estimators it builds) for a parameter fit
        would refuse, so `--set` is checked before any cell starts (fer_bench.run.check_model_parameters)."""
        check_values("orientations", self.orientations, low=1, integer=True)
        check_values("cell_sizes", tuple(self.cell_sizes) if isinstance(self.cell_sizes, list | tuple)
                     else self.cell_sizes, low=1, high=48, integer=True)
        check_values("cells_per_block", self.cells_per_block, low=1, integer=True)
        check_values("gamma_scales", self.gamma_scales, low=0, low_open=True)
        check_values("grid_subsample", self.grid_subsample, low=2, integer=True, allow_none=True)
        check_values("calibration_fraction", self.calibration_fraction, low=0, high=1, low_open=True, high_open=True)
        check_values("validation_fraction", self.validation_fraction, low=0, high=1, low_open=True, high_open=True)
        check_values("Cs", self.Cs, low=0, low_open=True)
        check_estimator_parameters(
            PCA(self.n_components, svd_solver="randomized", random_state=self.random_state),
            *(SVC(C=float(C), cache_size=self.cache_size) for C in self.Cs))

    # -- features -------------------------------------------------------------------------------------
    def hog_settings(self) -> dict:
        return dict(orientations=self.orientations, cell_sizes=tuple(self.cell_sizes),
                    cells_per_block=self.cells_per_block, transform_sqrt=self.transform_sqrt)

    def _hog(self, images: np.ndarray) -> np.ndarray:
        return hog_features(images, n_jobs=self.n_jobs, verbose=self.verbose, **self.hog_settings())

    def _reduce(self, features: np.ndarray) -> np.ndarray:
        reduced = self.scaler_.transform(features)
        return reduced if self.pca_ is None else self.pca_.transform(reduced)

    # -- fit ------------------------------------------------------------------------------------------
    def fit(self, X, y, sample_weight=None, validation_data=None):
        # Parallel work is explicit (joblib threads over HOG chunks and grid points); BLAS/OpenMP threads
        # inside them (PCA, calibration) would only oversubscribe the cores.
        with threadpool_limits(1):
            return self._fit(X, y, sample_weight, validation_data)

    def _fit(self, X, y, sample_weight, validation_data):
        X = check_images(X)
        y, sample_weight = check_labels_and_weights(X, y, sample_weight)
        if not len(self.Cs) or not len(self.gamma_scales):
            raise ValueError("Cs and gamma_scales must each hold at least one value")
        X, y, sample_weight, X_val, y_val, source = split_validation(
            X, y, sample_weight, validation_data, self.validation_fraction, self.random_state)
        self.classes_ = np.unique(y)
        weights = np.ones(len(y)) if sample_weight is None else sample_weight
        timings = {}

        started = time.perf_counter()
        features, val_features = self._hog(X), self._hog(X_val)
        timings["hog_seconds"] = time.perf_counter() - started

        started = time.perf_counter()
        svm_index, calibration_index = train_test_split(
            np.arange(len(y)), test_size=self.calibration_fraction, stratify=y, random_state=self.random_state)
        self.scaler_ = StandardScaler().fit(features[svm_index])
        self.pca_ = None
        if self.n_components is not None:
            self.pca_ = PCA(self.n_components, svd_solver="randomized", random_state=self.random_state)
            self.pca_.fit(self.scaler_.transform(features[svm_index]))
        reduced, val_reduced = self._reduce(features), self._reduce(val_features)
        del features, val_features
        gamma_unit = 1.0 / (reduced.shape[1] * float(reduced[svm_index].var()))
        timings["scale_pca_seconds"] = time.perf_counter() - started

        started = time.perf_counter()
        grid_index = svm_index
        if self.grid_subsample is not None and self.grid_subsample < len(svm_index):
            grid_index, _ = train_test_split(svm_index, train_size=self.grid_subsample,
                                             stratify=y[svm_index], random_state=self.random_state)
        calibration_data = (reduced[calibration_index], y[calibration_index], weights[calibration_index])
        grid = [(float(C), float(scale)) for C in sorted(self.Cs) for scale in sorted(self.gamma_scales)]
        fitted = Parallel(n_jobs=self.n_jobs or -1, prefer="threads")(
            delayed(_fit_and_score)((reduced[grid_index], y[grid_index], weights[grid_index]), calibration_data,
                                    (val_reduced, y_val), C, scale * gamma_unit, self.cache_size)
            for C, scale in grid)
        self.validation_scores_ = [
            {"C": C, "gamma_scale": scale, "gamma": scale * gamma_unit, "n_train": len(grid_index),
             "validation_accuracy": accuracy, "n_support": int(svc.n_support_.sum())}
            for (C, scale), (svc, _, accuracy) in zip(grid, fitted, strict=True)]
        # the first best wins: grid order puts smaller C (simpler model) first
        best = int(np.argmax([score["validation_accuracy"] for score in self.validation_scores_]))
        C, scale = grid[best]
        timings["grid_seconds"] = time.perf_counter() - started

        started = time.perf_counter()
        if len(grid_index) == len(svm_index):
            self.svc_, self.calibrator_, val_accuracy = fitted[best]
        else:
            self.svc_, self.calibrator_, val_accuracy = _fit_and_score(
                (reduced[svm_index], y[svm_index], weights[svm_index]), calibration_data, (val_reduced, y_val),
                C, scale * gamma_unit, self.cache_size)
        del fitted
        timings["final_fit_seconds"] = time.perf_counter() - started
        self.timings_ = {name: round(seconds, 3) for name, seconds in timings.items()}
        self.selected_params_ = {
            "C": C, "gamma_scale": scale, "gamma": scale * gamma_unit,
            "validation_accuracy": val_accuracy, "validation_source": source,
            "n_train_svm": len(svm_index), "n_train_calibration": len(calibration_index),
            "validation_scores": self.validation_scores_,
        }
        return self

    # -- predict --------------------------------------------------------------------------------------
    def predict_proba(self, X) -> np.ndarray:
        check_is_fitted(self, "calibrator_")
        features = self._hog(check_images(X))
        with threadpool_limits(1):
            return self.calibrator_.predict_proba(decision_matrix(self.svc_, self._reduce(features)))

    def stage_timings(self) -> dict | None:
        """Seconds of each stage of the last fit (HOG, scaling and PCA, the grid, the final fit)."""
        return dict(self.timings_) if hasattr(self, "timings_") else None

    def learned_pictures(self) -> dict:
        """The HOG settings, so the report can draw the gradient-orientation pictures the SVM sees."""
        return {"hog_settings": self.hog_settings()}


def make_hog_svm(seed: int = 0, quick: bool = False, **params) -> HogSVMClassifier:
    """Registry factory: the full configuration, or a small fast one with quick=True."""
    defaults = dict(QUICK_PARAMS) if quick else {}
    return HogSVMClassifier(random_state=seed, **{**defaults, **params})
