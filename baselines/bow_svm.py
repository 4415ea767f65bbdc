"""Bag of visual words: dense local descriptors -> a vocabulary learned on training descriptors -> an encoding per
spatial-pyramid region (Fisher vectors, or word histograms) -> linear SVM, with probabilities from a held-out
calibration.

The published reference for FER-2013 (Ionescu, Popescu & Grozea 2013: dense SIFT, a bag of visual words with a
spatial pyramid and an SVM, 67.48% on PrivateTest) used a histogram-intersection kernel. Here (defaults chosen on
PublicTest, docs/bow-svm.md):

1. Descriptors (dense_descriptors.py): SIFT-like descriptors every `step` (2) pixels at every scale in `scales`
   (a 4s x 4s window each; 1,091 per face with the defaults), computed a batch of images at a time.
2. Vocabulary, learned on `vocabulary_descriptors` descriptors sampled (seeded) from `vocabulary_images` training
   images. `encoding="fisher"` (default): the descriptors' first `pca_components` (64) principal components and a
   diagonal Gaussian mixture of `vocabulary_size` (64) components on them (PCA, GaussianMixture).
   `encoding="histogram"`: MiniBatchKMeans with `vocabulary_size` words.
3. Encoding, per region of each pyramid grid in `pyramid` (1x1 and 2x2 by default). Fisher: the region's improved
   Fisher vector (fisher_vectors.py: K + 2Kd numbers, power- and L2-normalised), scaled by the square root of the
   region's pyramid weight (Lazebnik et al. 2006: the levels weigh 1/2^(L-1), ..., 1/2), so a linear kernel
   weighs regions as a histogram pyramid does. Histogram: every descriptor's nearest word (hard assignment),
   counted per region and normalised to sum to the region's weight, so the whole vector sums to 1.
4. Kernel map (`kernel_map`): "hellinger" (Fisher: the power normalisation; histograms: their square root, the
   exact feature map of the Hellinger kernel), "chi2" (histograms only: scikit-learn's AdditiveChi2Sampler, 2
   sample steps, 3x the dimension) or "linear" (the encoding as it is).
5. A linear SVM for each C in `Cs`: with `solver="least_squares"` (default) a least-squares SVM
   (least_squares_svm.py: one-vs-rest ridge regression on +-1 targets, the whole C grid from one Gram matrix of
   the images: Fisher vectors have more features than FER-2013 has faces), with `solver="liblinear"` LinearSVC
   (squared hinge; threads, one C per core); then a multinomial logistic regression on its decision values
   fitted on a stratified, seeded `calibration_fraction` of the training images kept out of the SVM (as hog_svm
   does), and the C whose calibrated prediction is most accurate on the validation data (PublicTest) is kept.
   Nothing is fitted on the validation data.

Memory: descriptors are never held for a whole data set. Images are encoded `batch_size` at a time (n_jobs
batches at once, joblib threads: the NumPy work releases the GIL): a batch of 128 images holds 128 x 1,091 x 128
float32 descriptors (72 MB); all of FER-2013's 28,709 training images at once would be 16 GB of descriptors.
Only the encodings are kept: Fisher vectors of 5 regions x 64 Gaussians x (1 + 2 x 64) numbers = 41,280 float32
per image, 4.7 GB for 28,709 images; the least-squares solver adds the images' float32 Gram (3.3 GB) and one
float64 Cholesky factor of the SVM's 90% (5.3 GB): about 14 GB at the peak of a FER-2013 fit (fit refuses in one
line, before encoding, where that exceeds 3/4 of the machine's memory). LinearSVC would copy such dense vectors
at 16 bytes a value (17 GB per C). Histograms of 400 words are 21 x 400 float32 per image (pyramid 1, 2, 4;
0.97 GB) and sparse for liblinear: about 4 GB at the peak.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence

import numpy as np
from joblib import Parallel, delayed
from sklearn.cluster import MiniBatchKMeans
from sklearn.decomposition import PCA
from sklearn.kernel_approximation import AdditiveChi2Sampler
from sklearn.mixture import GaussianMixture
from sklearn.model_selection import train_test_split
from sklearn.svm import LinearSVC
from sklearn.utils.validation import check_is_fitted
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from fer_bench.data.dataset import check_images
from fer_bench.models.base import SklearnImageClassifier
from fer_bench.validation import check_estimator_parameters, check_values

from .dense_descriptors import (
    DESCRIPTORS,
    IMAGE_SIDE,
    check_descriptor_settings,
    dense_descriptors,
    descriptor_centres,
    descriptor_length,
)
from .features import PROGRESS_MIN_IMAGES, check_labels_and_weights, split_validation
from .fisher_vectors import fisher_vector_length, fisher_vectors
from .least_squares_svm import gram_bytes, least_squares_svms
from .spatial_pyramid import nearest_words, pyramid_histograms, pyramid_regions
from .svm_calibration import calibrate_and_score, decision_matrix

ENCODINGS = ("histogram", "fisher")
KERNEL_MAPS = ("hellinger", "chi2", "linear")
SOLVERS = ("liblinear", "least_squares")
#: AdditiveChi2Sampler's sample steps for kernel_map="chi2" (2: 3x the histogram dimension)
CHI2_SAMPLE_STEPS = 2
#: the C grid: Fisher vectors of 4,000 FER-2013 training faces peak at C = 0.3 on PublicTest, and more faces
#: want less regularisation (docs/bow-svm.md)
DEFAULT_CS = (0.1, 0.3, 1.0, 3.0)
QUICK_PARAMS = {"scales": (3,), "step": 6, "vocabulary_size": 8, "pca_components": 16, "vocabulary_images": 200,
                "vocabulary_descriptors": 4000, "pyramid": (1, 2), "Cs": (0.3, 3.0)}


# --- the model --------------------------------------------------------------------------------------------------

def _fit_and_score(svm_data, calibration_data, validation_data, C, random_state):
    """One C: LinearSVC on svm_data, then its calibration and calibrated validation accuracy. Each *_data is
    (features, labels[, sample_weight])."""
    features, labels, weights = svm_data
    # dual=False (liblinear's primal Newton solver) for every shape: the dual solver draws its coordinate order
    # from liblinear's one global random state, which the threads of the C grid would share, so the same seed
    # could give another model (it does with the Fisher vectors, which have more features than images)
    svm = LinearSVC(C=C, dual=False, random_state=random_state).fit(features, labels, sample_weight=weights)
    return calibrate_and_score(svm, calibration_data, validation_data)


#: liblinear (LinearSVC) copies the training data into its own sparse format: an index and a double per non-zero
LIBLINEAR_BYTES_PER_VALUE = 16


def physical_memory_bytes() -> int | None:
    """The machine's physical memory, None where the OS does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def _checked_pixels(X) -> np.ndarray:
    """Images of shape (N, 48, 48) holding finite real numbers (ValueError in one line otherwise)."""
    X = check_images(X)
    if not (np.issubdtype(X.dtype, np.integer) or np.issubdtype(X.dtype, np.floating)) or X.dtype == np.bool_:
        raise ValueError(f"expected images of integer or floating-point pixels, got dtype {X.dtype}")
    if np.issubdtype(X.dtype, np.floating) and not np.isfinite(X).all():
        raise ValueError(f"images hold {int(np.sum(~np.isfinite(X)))} NaN or infinite pixel values")
    return X


class BowSVMClassifier(SklearnImageClassifier):
    """Dense descriptors + visual vocabulary + spatial pyramid + kernel-mapped LinearSVC, with calibrated
    probabilities; C chosen on the validation data. See the module docstring.

    Parameters
    ----------
    descriptor : "sift" (default), "hog" or "daisy" (dense_descriptors.py).
    scales : descriptor window sizes, each 4 x scale pixels.
    step : pixels between descriptor windows.
    encoding : "fisher" (default: improved Fisher vectors of the PCA-projected descriptors per region,
        fisher_vectors.py) or "histogram" (each descriptor's nearest visual word, counted per region).
    vocabulary_size : the Gaussians of the Fisher vectors' mixture (64), or visual words (MiniBatchKMeans
        clusters; 400 was the histograms' best on PublicTest).
    pca_components : "fisher" only: the descriptors' dimension after PCA (fitted on the vocabulary sample).
    vocabulary_images, vocabulary_descriptors : the vocabulary is learned on this many descriptors sampled from
        this many training images (seeded).
    pyramid : grid sizes of the spatial pyramid's levels, (1, 2): 1x1 and 2x2 (the histograms' best: (1, 2, 4)).
    kernel_map : "hellinger", "chi2" or "linear" (see the module docstring). With "fisher": "hellinger" is the
        Fisher vectors' power normalisation (signed square root, the "improved" vectors), "linear" leaves it out,
        "chi2" is refused.
    mirror : encode each face as the mean of its encoding and its mirror image's (default; twice the encoding
        time).
    solver : "least_squares" (default; squared loss, least_squares_svm.py; memory grows with the square of the
        training images) or "liblinear" (LinearSVC, squared hinge loss; memory grows with the features' size).
    Cs : SVM regularisation values to choose from on the validation data.
    calibration_fraction : share of the training images kept out of the SVM to fit the probabilities.
    validation_fraction : share of the training images held out for the choice when fit gets no validation_data.
    batch_size : images encoded at once (bounds the memory the descriptors take).
    n_jobs : threads encoding batches and fitting the C grid (None: all cores).
    verbose : progress bar while encoding large inputs (on a terminal only).
    random_state : seed of the vocabulary sample, k-means, the calibration split and LinearSVC.

    After fit: classes_, vocabulary_ (the fitted MiniBatchKMeans), svm_, calibrator_, selected_params_ (chosen C,
    the validation accuracy of the final model and the whole grid), validation_scores_, timings_ (seconds and
    images/s per stage, the cell's timings.json "stages").
    """

    def __init__(self, descriptor: str = "sift", scales: Sequence[int] = (2, 3, 4), step: int = 2,
                 encoding: str = "fisher", vocabulary_size: int = 64, pca_components: int = 64,
                 vocabulary_images: int = 2000, vocabulary_descriptors: int = 100_000,
                 pyramid: Sequence[int] = (1, 2), kernel_map: str = "hellinger", mirror: bool = True,
                 solver: str = "least_squares",
                 Cs: Sequence[float] = DEFAULT_CS, calibration_fraction: float = 0.1,
                 validation_fraction: float = 0.1, batch_size: int = 128, n_jobs: int | None = None,
                 verbose: bool = True, random_state=0):
        self.descriptor = descriptor
        self.scales = scales
        self.step = step
        self.encoding = encoding
        self.vocabulary_size = vocabulary_size
        self.pca_components = pca_components
        self.vocabulary_images = vocabulary_images
        self.vocabulary_descriptors = vocabulary_descriptors
        self.pyramid = pyramid
        self.kernel_map = kernel_map
        self.mirror = mirror
        self.solver = solver
        self.Cs = Cs
        self.calibration_fraction = calibration_fraction
        self.validation_fraction = validation_fraction
        self.batch_size = batch_size
        self.n_jobs = n_jobs
        self.verbose = verbose
        self.random_state = random_state

    def check_parameters(self) -> None:
        """ValueError (scikit-learn's InvalidParameterError for the estimators it builds) for a parameter fit
        would refuse, so `--set` is checked before any cell starts (fer_bench.run.check_model_parameters)."""
        for name, choices in (("descriptor", DESCRIPTORS), ("kernel_map", KERNEL_MAPS), ("solver", SOLVERS),
                              ("encoding", ENCODINGS)):
            if getattr(self, name) not in choices:
                raise ValueError(f"{name} must be one of {', '.join(choices)}, got {getattr(self, name)!r}")
        if not isinstance(self.mirror, bool | np.bool_):
            raise ValueError(f"mirror must be True or False, got {self.mirror!r}")
        if self.encoding == "fisher" and self.kernel_map == "chi2":
            raise ValueError("kernel_map 'chi2' applies to histograms; with encoding 'fisher' use 'hellinger' (power "
                             "normalisation) or 'linear'")
        scales = tuple(self.scales) if isinstance(self.scales, list | tuple) else self.scales
        check_values("scales", scales, low=1, high=IMAGE_SIDE // 4, integer=True)
        check_values("step", self.step, low=1, high=IMAGE_SIDE, integer=True)
        check_descriptor_settings(self.descriptor, tuple(int(s) for s in scales), int(self.step))
        check_values("vocabulary_size", self.vocabulary_size, low=2, integer=True)
        check_values("vocabulary_images", self.vocabulary_images, low=1, integer=True)
        check_values("vocabulary_descriptors", self.vocabulary_descriptors, low=self.vocabulary_size, integer=True)
        check_values("pca_components", self.pca_components, low=1, high=descriptor_length(self.descriptor),
                     integer=True)
        pyramid = tuple(self.pyramid) if isinstance(self.pyramid, list | tuple) else self.pyramid
        check_values("pyramid", pyramid, low=1, high=IMAGE_SIDE, integer=True)
        if len(set(pyramid)) != len(pyramid):
            raise ValueError(f"pyramid must list each grid size once, got {self.pyramid!r}")
        check_values("Cs", self.Cs, low=0, low_open=True)
        check_values("calibration_fraction", self.calibration_fraction, low=0, high=1, low_open=True, high_open=True)
        check_values("validation_fraction", self.validation_fraction, low=0, high=1, low_open=True, high_open=True)
        check_values("batch_size", self.batch_size, low=1, integer=True)
        check_values("n_jobs", self.n_jobs, low=1, integer=True, allow_none=True)
        check_estimator_parameters(
            MiniBatchKMeans(int(self.vocabulary_size), random_state=self.random_state),
            *(LinearSVC(C=float(C), random_state=self.random_state) for C in self.Cs))

    # -- features -------------------------------------------------------------------------------------------
    def _descriptors(self, images: np.ndarray) -> np.ndarray:
        return dense_descriptors(images, self.descriptor, self.scales, int(self.step))

    def _workers(self, tasks: int) -> int:
        return max(1, min(self.n_jobs or os.cpu_count() or 1, tasks))

    def _batches(self, function, arrays: Sequence[np.ndarray], out: np.ndarray, desc: str) -> np.ndarray:
        """out[i] = function(*batch)[i - start] for every batch of `batch_size` rows of `arrays` (sliced alike),
        n_jobs batches at once, written in order (the same result for any batch size or number of threads)."""
        size = int(self.batch_size)
        starts = range(0, len(out), size)
        show_bar = self.verbose and len(out) > PROGRESS_MIN_IMAGES
        # disable=None: tqdm draws only on a terminal, so a log file (a grid, `fer-bench robustness`'s 60 predict
        # calls per cell) gets no redrawn bars
        with tqdm(total=len(out), desc=desc, unit="img", disable=None if show_bar else True, leave=False) as bar:
            results = Parallel(n_jobs=self._workers(len(starts)), prefer="threads", return_as="generator")(
                delayed(function)(*(array[start:start + size] for array in arrays)) for start in starts)
            for start, result in zip(starts, results, strict=True):
                out[start:start + len(result)] = result
                bar.update(len(result))
        return out

    def _words_batch(self, images: np.ndarray) -> np.ndarray:
        return nearest_words(self._descriptors(images), self.word_centres_, self.word_norms_)

    def _projected(self, descriptors: np.ndarray) -> np.ndarray:
        """(N, P, pca_components) the descriptors in the PCA space the Gaussian mixture was fitted in."""
        flat = self.pca_.transform(descriptors.reshape(-1, descriptors.shape[-1]))
        return flat.reshape(*descriptors.shape[:2], -1)

    def _encode_batch(self, images: np.ndarray) -> np.ndarray:
        if self.mirror:  # the mean of the face's encoding and its mirror image's, in fit and prediction alike
            return (self._encode_one_side(images) + self._encode_one_side(images[:, :, ::-1])) / 2
        return self._encode_one_side(images)

    def _encode_one_side(self, images: np.ndarray) -> np.ndarray:
        if self.encoding == "fisher":
            return fisher_vectors(self._projected(self._descriptors(images)), self.vocabulary_,
                                  self.regions_, self.region_weights_, power=self.kernel_map == "hellinger")
        return pyramid_histograms(self._words_batch(images), self.regions_, self.region_weights_,
                                  int(self.vocabulary_size))

    def _encoding_length(self) -> int:
        """The length of one image's encoding: every region's histogram or Fisher vector (from the parameters:
        known before fit)."""
        per_region = (fisher_vector_length(int(self.vocabulary_size), int(self.pca_components))
                      if self.encoding == "fisher" else int(self.vocabulary_size))
        _, region_weights = pyramid_regions(descriptor_centres(self.descriptor, self.scales, int(self.step)),
                                            self.pyramid)
        return len(region_weights) * per_region

    def visual_words(self, images: np.ndarray) -> np.ndarray:
        """(N, P) the nearest vocabulary word of every descriptor of the images (after the vocabulary is learned),
        in descriptor_centres order; encoding "histogram" only."""
        if self.encoding != "histogram":
            raise ValueError(f"visual_words needs encoding 'histogram', this model's is {self.encoding!r}")
        n_descriptors = len(descriptor_centres(self.descriptor, self.scales, int(self.step)))
        out = np.empty((len(images), n_descriptors), dtype=np.intp)
        return self._batches(self._words_batch, [images], out, "visual words")

    def encode(self, images: np.ndarray) -> np.ndarray:
        """(N, regions x vocabulary_size) spatial-pyramid histograms of the images, or (N, regions x (K + 2Kd))
        Fisher vectors (after fit)."""
        out = np.empty((len(images), self._encoding_length()), dtype=np.float32)
        return self._batches(self._encode_batch, [images], out, "BoW encoding")

    def _kernel_features(self, histograms: np.ndarray) -> np.ndarray:
        if self.encoding == "fisher":  # the map (power normalisation or none) is part of the encoding
            return histograms
        if self.kernel_map == "hellinger":
            return np.sqrt(histograms)
        if self.kernel_map == "chi2":
            return self.chi2_map_.transform(histograms).astype(np.float32)
        return histograms

    # -- fit ------------------------------------------------------------------------------------------------
    def fit(self, X, y, sample_weight=None, validation_data=None):
        # Parallel work is explicit (joblib threads over batches and C values); BLAS/OpenMP threads inside them
        # (k-means, the word assignment, calibration) would only oversubscribe the cores.
        with threadpool_limits(1):
            return self._fit(X, y, sample_weight, validation_data)

    def _sampled_descriptors(self, images: np.ndarray, picks: np.ndarray) -> np.ndarray:
        """(n, k, D): the descriptors picks[i] (k indices) of each image i."""
        return np.take_along_axis(self._descriptors(images), picks[:, :, None], axis=1)

    def _learn_vocabulary(self, X: np.ndarray, rng: np.random.Generator) -> float:
        """Fit vocabulary_ on vocabulary_descriptors descriptors sampled (seeded, the same number from each image)
        from vocabulary_images training images; returns the images/s of the descriptor extraction on them."""
        chosen = np.sort(rng.choice(len(X), min(int(self.vocabulary_images), len(X)), replace=False))
        per_image = len(descriptor_centres(self.descriptor, self.scales, int(self.step)))
        take = min(per_image, -(-int(self.vocabulary_descriptors) // len(chosen)))
        picks = np.sort(rng.random((len(chosen), per_image)).argsort(axis=1)[:, :take], axis=1)
        sample = np.empty((len(chosen), take, descriptor_length(self.descriptor)), dtype=np.float32)
        started = time.perf_counter()
        self._batches(self._sampled_descriptors, [X[chosen], picks], sample, "descriptors")
        seconds = time.perf_counter() - started
        sample = sample.reshape(-1, sample.shape[-1])
        if len(sample) > self.vocabulary_descriptors:
            sample = sample[np.sort(rng.choice(len(sample), int(self.vocabulary_descriptors), replace=False))]
        if len(sample) < self.vocabulary_size:
            raise ValueError(f"vocabulary_size {self.vocabulary_size} is more than the {len(sample)} descriptors "
                             f"of the {len(chosen)} training images sampled for the vocabulary")
        if self.encoding == "fisher":
            self.pca_ = PCA(int(self.pca_components), random_state=self.random_state).fit(sample)
            self.vocabulary_ = GaussianMixture(int(self.vocabulary_size), covariance_type="diag",
                                               random_state=self.random_state).fit(self.pca_.transform(sample))
            return len(chosen) / seconds if seconds > 0 else None
        self.vocabulary_ = MiniBatchKMeans(int(self.vocabulary_size), batch_size=2048, n_init=1,
                                           random_state=self.random_state).fit(sample)
        self.word_centres_ = self.vocabulary_.cluster_centers_.astype(np.float32)
        self.word_norms_ = np.einsum("ij,ij->i", self.word_centres_, self.word_centres_)
        return len(chosen) / seconds if seconds > 0 else None

    def _fit(self, X, y, sample_weight, validation_data):
        self.check_parameters()
        X = _checked_pixels(X)
        y, sample_weight = check_labels_and_weights(X, y, sample_weight)
        X, y, sample_weight, X_val, y_val, source = split_validation(
            X, y, sample_weight, validation_data, self.validation_fraction, self.random_state)
        X_val = _checked_pixels(X_val)
        self.classes_ = np.unique(y)
        weights = np.ones(len(y)) if sample_weight is None else sample_weight
        rng = np.random.default_rng(self.random_state)
        timings = {}

        started = time.perf_counter()
        timings["descriptor_images_per_s"] = self._learn_vocabulary(X, rng)
        timings["vocabulary_seconds"] = time.perf_counter() - started
        self.regions_, self.region_weights_ = pyramid_regions(
            descriptor_centres(self.descriptor, self.scales, int(self.step)), self.pyramid)

        self.check_resources(len(X))
        started = time.perf_counter()
        histograms, val_histograms = self.encode(X), self.encode(X_val)
        seconds = time.perf_counter() - started
        timings["encode_seconds"] = seconds
        timings["encode_images_per_s"] = (len(X) + len(X_val)) / seconds if seconds > 0 else None
        started = time.perf_counter()
        self.selected_params_ = {**self.fit_svm(histograms, y, weights, val_histograms, y_val),
                                 "validation_source": source}
        timings["svm_seconds"] = time.perf_counter() - started
        self.timings_ = {name: None if value is None else round(float(value), 3) for name, value in timings.items()}
        return self

    def check_resources(self, n_train: int) -> None:
        """ValueError (before a grid starts, and again in fit before the encoding) when the SVMs' memory would
        exceed 3/4 of the machine's: liblinear's
        copies of dense Fisher vectors (histograms are sparse: it stores their non-zeros only), or the
        least-squares solver's Gram matrices beside the features."""
        memory = physical_memory_bytes()
        if memory is None:
            return
        n_svm = round(n_train * (1 - self.calibration_fraction))
        if self.solver == "least_squares":
            needed = n_train * self._encoding_length() * 4 + gram_bytes(n_train, n_svm)
            what = f"the least-squares solver's Gram matrices of {n_train} training faces beside their features"
            advice = ("use fewer training faces, or encoding=histogram with solver=liblinear (sparse: less "
                      "memory, less accurate)")
        elif self.encoding == "fisher":
            at_once = self._workers(len(self.Cs))
            needed = n_svm * self._encoding_length() * LIBLINEAR_BYTES_PER_VALUE * at_once
            what = (f"Fisher vectors of {self.vocabulary_size} Gaussians x {self.pca_components} dimensions on "
                    f"{n_svm} SVM training faces in LinearSVC's copies ({at_once} C values at once)")
            advice = "use solver=least_squares, fewer Gaussians (vocabulary_size), n_jobs=1 or fewer training faces"
        else:
            return
        if needed > 0.75 * memory:
            raise ValueError(f"{what} need about {needed / 1e9:.2g} GB, more than 3/4 of this machine's "
                             f"{memory / 1e9:.2g} GB: {advice}")

    def fit_svm(self, histograms, y, weights, val_histograms, y_val) -> dict:
        """The kernel map, the SVM for each C with its calibration, and the C whose calibrated prediction is most
        accurate on the validation histograms (svm_, calibrator_, validation_scores_); returns what was chosen."""
        self.chi2_map_ = AdditiveChi2Sampler(sample_steps=CHI2_SAMPLE_STEPS).fit(histograms[:1]) \
            if self.kernel_map == "chi2" else None
        features, val_features = self._kernel_features(histograms), self._kernel_features(val_histograms)
        n_features = features.shape[1]
        svm_index, calibration_index = train_test_split(
            np.arange(len(y)), test_size=self.calibration_fraction, stratify=y, random_state=self.random_state)
        calibration_data = (features[calibration_index], y[calibration_index], weights[calibration_index])
        Cs = sorted(float(C) for C in self.Cs)
        if self.solver == "least_squares":
            # one Gram matrix for the whole grid, its blocks on n_jobs threads (single-threaded BLAS: see
            # least_squares_svm.gram_matrix), one Cholesky factorisation per C
            svms = least_squares_svms(features, y, Cs, svm_index, weights, n_jobs=self._workers(len(features)))
            fitted = [calibrate_and_score(svm, calibration_data, (val_features, y_val)) for svm in svms]
        else:
            # LinearSVC fits in float64: one copy, shared by the threads of the C grid (each would make its own)
            svm_data = (features[svm_index].astype(np.float64), y[svm_index], weights[svm_index])
            del features
            fitted = Parallel(n_jobs=self._workers(len(Cs)), prefer="threads")(
                delayed(_fit_and_score)(svm_data, calibration_data, (val_features, y_val), C, self.random_state)
                for C in Cs)
        self.validation_scores_ = [{"C": C, "validation_accuracy": accuracy}
                                   for C, (_, _, accuracy) in zip(Cs, fitted, strict=True)]
        # the first best wins: the grid is sorted, so a smaller C (a simpler model) wins a tie
        best = int(np.argmax([score["validation_accuracy"] for score in self.validation_scores_]))
        self.svm_, self.calibrator_, val_accuracy = fitted[best]
        return {"C": Cs[best], "validation_accuracy": val_accuracy, "n_features": int(n_features),
                "descriptors_per_image": int(self.regions_.shape[1]), "n_train_svm": len(svm_index),
                "n_train_calibration": len(calibration_index), "validation_scores": self.validation_scores_}

    # -- predict --------------------------------------------------------------------------------------------
    def predict_proba(self, X) -> np.ndarray:
        check_is_fitted(self, "calibrator_")
        X = _checked_pixels(X)
        with threadpool_limits(1):
            features = self._kernel_features(self.encode(X))
            return self.calibrator_.predict_proba(decision_matrix(self.svm_, features))

    def stage_timings(self) -> dict | None:
        return dict(self.timings_) if hasattr(self, "timings_") else None


def make_bow_svm(seed: int = 0, quick: bool = False, **params) -> BowSVMClassifier:
    """Registry factory: the full configuration, or a small fast one with quick=True."""
    defaults = dict(QUICK_PARAMS) if quick else {}
    return BowSVMClassifier(random_state=seed, **{**defaults, **params})
