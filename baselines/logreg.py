"""Multinomial logistic regression on standardised pixels: the simplest baseline.

Pixels are scaled to [0, 1] and standardised per pixel; scikit-learn's LogisticRegression (lbfgs, softmax
over all classes) is fitted for each C of a small grid, from the strongest regularisation to the weakest,
each fit starting from the previous solution (warm start) so the whole grid costs little more than the
slowest fit. The C with the best validation (PublicTest) accuracy is kept; the model is trained on the
training images only.
"""

from __future__ import annotations

import copy
import time
import warnings
from collections.abc import Sequence

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from sklearn.utils.validation import check_is_fitted
from threadpoolctl import threadpool_limits

from fer_bench.data.dataset import check_images
from fer_bench.models.base import SklearnImageClassifier
from fer_bench.validation import check_estimator_parameters, check_values

from .features import check_labels_and_weights, pixel_matrix, split_validation

#: the C grid of the full configuration (measured on FER-2013: PublicTest accuracy peaks inside it)
DEFAULT_CS = (1e-4, 1e-3, 1e-2)
QUICK_PARAMS = {"Cs": (1e-3, 1e-2), "max_iter": 50}


class PixelLogisticRegression(SklearnImageClassifier):
    """Softmax regression on standardised pixels; C chosen on the validation data from `Cs`.

    Parameters
    ----------
    Cs : inverse regularisation strengths to try (fitted in increasing order, warm-started).
    max_iter, tol : lbfgs limits for each C.
    validation_fraction : share of the training data held out for the choice when fit gets no
        validation_data.
    n_threads : BLAS/OpenMP threads for the solver (None: the library default). 1 by default: on a
        machine whose cores are busy with other work, 2 spinning BLAS threads made lbfgs over 10 times
        slower than one.
    random_state : seed (the lbfgs fit itself is deterministic; the seed fixes the held-out split).

    After fit: classes_, scaler_, model_ (the chosen LogisticRegression), selected_params_ (chosen C,
    its validation accuracy and the whole grid), validation_scores_ (the grid: C, validation accuracy,
    iterations, seconds), coef_images_ ((n_classes, 48, 48) weights on raw pixel values).
    """

    def __init__(self, Cs: Sequence[float] = DEFAULT_CS, max_iter: int = 300, tol: float = 1e-4,
                 validation_fraction: float = 0.1, n_threads: int | None = 1, random_state=0):
        self.Cs = Cs
        self.max_iter = max_iter
        self.tol = tol
        self.validation_fraction = validation_fraction
        self.n_threads = n_threads
        self.random_state = random_state

    def check_parameters(self) -> None:
        """ValueError (scikit-learn's InvalidParameterError for the LogisticRegression it fits) for a parameter
        fit would refuse, so `--set` is checked before any cell starts (fer_bench.run.check_model_parameters)."""
        check_values("Cs", self.Cs, low=0, low_open=True)
        check_values("validation_fraction", self.validation_fraction, low=0, high=1, low_open=True, high_open=True)
        check_values("n_threads", self.n_threads, low=1, integer=True, allow_none=True)
        check_estimator_parameters(*(LogisticRegression(C=float(C), max_iter=self.max_iter, tol=self.tol,
                                                        random_state=self.random_state) for C in self.Cs))

    def fit(self, X, y, sample_weight=None, validation_data=None):
        with threadpool_limits(self.n_threads):
            return self._fit(X, y, sample_weight, validation_data)

    def _fit(self, X, y, sample_weight, validation_data):
        X = check_images(X)
        y, sample_weight = check_labels_and_weights(X, y, sample_weight)
        if not len(self.Cs):
            raise ValueError("Cs must hold at least one value of C")
        X, y, sample_weight, X_val, y_val, source = split_validation(
            X, y, sample_weight, validation_data, self.validation_fraction, self.random_state)
        self.classes_ = np.unique(y)

        self.scaler_ = StandardScaler().fit(pixel_matrix(X))
        train = self.scaler_.transform(pixel_matrix(X))
        val = self.scaler_.transform(pixel_matrix(X_val))
        model = LogisticRegression(max_iter=self.max_iter, tol=self.tol, warm_start=True,
                                   random_state=self.random_state)
        self.validation_scores_ = []
        best_accuracy = -1.0
        for C in sorted(float(c) for c in self.Cs):
            started = time.perf_counter()
            model.set_params(C=C)
            with warnings.catch_warnings():
                # max_iter bounds the fit time on purpose; the grid records convergence instead
                warnings.simplefilter("ignore", ConvergenceWarning)
                model.fit(train, y, sample_weight=sample_weight)
            n_iter = int(model.n_iter_.max())
            accuracy = float(np.mean(model.predict(val) == y_val))
            self.validation_scores_.append({
                "C": C, "validation_accuracy": accuracy, "n_iter": n_iter,
                "converged": n_iter < self.max_iter, "fit_seconds": round(time.perf_counter() - started, 3),
            })
            if accuracy > best_accuracy:  # ties keep the stronger regularisation (earlier, smaller C)
                best_accuracy = accuracy
                self.model_ = copy.deepcopy(model)
        self.model_.set_params(warm_start=False)
        self.selected_params_ = {"C": float(self.model_.C), "validation_accuracy": best_accuracy,
                                 "validation_source": source, "validation_scores": self.validation_scores_}
        return self

    def predict_proba(self, X) -> np.ndarray:
        check_is_fitted(self, "model_")
        standardised = self.scaler_.transform(pixel_matrix(check_images(X)))
        with threadpool_limits(self.n_threads):
            # float64 so each row sums to 1 to double precision (float32 inputs give float32 probabilities)
            return self.model_.predict_proba(standardised.astype(np.float64))

    @property
    def coef_images_(self) -> np.ndarray:
        """Per-class weight templates on raw pixel values, (n_classes, 48, 48).

        The logit of class k is sum_j W[k, j] * x_j + const for uint8 pixels x_j (the /255 and the
        standardisation folded into the weights). A binary model has one weight vector w for class 1;
        it is shown as the equivalent softmax pair (-w/2, +w/2)."""
        check_is_fitted(self, "model_")
        weights = self.model_.coef_ / (255.0 * self.scaler_.scale_)
        if len(self.classes_) == 2:
            weights = np.vstack([-weights / 2, weights / 2])
        return weights.reshape(len(self.classes_), 48, 48)

    def learned_pictures(self) -> dict:
        """Each class's pixel weights as a 48x48 template."""
        return {"templates": self.coef_images_}


def make_logreg(seed: int = 0, quick: bool = False, **params) -> PixelLogisticRegression:
    """Registry factory: the full configuration, or a small fast one with quick=True."""
    defaults = dict(QUICK_PARAMS) if quick else {}
    return PixelLogisticRegression(random_state=seed, **{**defaults, **params})
