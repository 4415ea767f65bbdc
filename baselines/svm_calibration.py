"""Probabilities for an SVM (hog_svm, bow_svm): a multinomial logistic regression fitted on its decision values over
a calibration part of the training images the SVM did not see, and the accuracy of the calibrated prediction a C
grid is chosen by."""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression


def decision_matrix(svm, features: np.ndarray) -> np.ndarray:
    """The SVM's decision values as a 2-D array (a binary SVM returns one column)."""
    return svm.decision_function(features).reshape(len(features), -1)


def fit_calibrator(svm, features, labels, sample_weight) -> LogisticRegression:
    """Multinomial logistic regression from the SVM's decision values to class probabilities."""
    calibrator = LogisticRegression(max_iter=1000)
    calibrator.fit(decision_matrix(svm, features), labels, sample_weight=sample_weight)
    if not np.array_equal(calibrator.classes_, svm.classes_):
        raise ValueError("the calibration images miss a class: every class needs at least two training images")
    return calibrator


def calibrate_and_score(svm, calibration_data, validation_data):
    """(svm, its calibrator fitted on calibration_data = (features, labels, sample_weight), the calibrated
    prediction's accuracy on validation_data = (features, labels)): the accuracy of the model as it would
    predict."""
    calibrator = fit_calibrator(svm, *calibration_data)
    features, labels = validation_data
    proba = calibrator.predict_proba(decision_matrix(svm, features))
    accuracy = float(np.mean(calibrator.classes_[np.argmax(proba, axis=1)] == labels))
    return svm, calibrator, accuracy
