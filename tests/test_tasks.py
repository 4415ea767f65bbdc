import numpy as np
import pytest

from fer_bench import CLASS_NAMES
from fer_bench.errors import FerBenchError
from fer_bench.tasks import (
    _TASKS,
    BALANCING_STRATEGIES,
    Task,
    available_tasks,
    balance,
    class_weights,
    get_task,
    register_task,
)

# Canonical labels with FER-2013-like imbalance: 40 angry, 5 disgust, 41 fear, 72 happy, 48 sad, 31 surprise, 50 neutral
COUNTS = [40, 5, 41, 72, 48, 31, 50]
LABELS = np.repeat(np.arange(7), COUNTS)
IMAGES = np.random.default_rng(0).integers(0, 256, (len(LABELS), 48, 48), dtype=np.uint8)


def test_registry_has_the_three_tasks():
    assert available_tasks()[:3] == ["7class", "5class", "binary"]
    with pytest.raises(FerBenchError, match="unknown task 'nine'"):
        get_task("nine")


def test_7class_keeps_everything():
    _, y, _ = get_task("7class").select(IMAGES, LABELS)
    assert np.array_equal(y, LABELS)
    assert get_task("7class").class_names == CLASS_NAMES


def test_5class_drops_disgust_and_neutral():
    task = get_task("5class")
    X, y, ids = task.select(IMAGES, LABELS, np.arange(len(LABELS)))
    assert task.class_names == ("angry", "fear", "happy", "sad", "surprise")
    assert sorted(set(y)) == [0, 1, 2, 3, 4]
    assert len(y) == len(LABELS) - COUNTS[1] - COUNTS[6]
    # relabelled in order: angry 0, fear 1, happy 2, sad 3, surprise 4
    assert np.array_equal(np.bincount(y), [40, 41, 72, 48, 31])
    assert np.array_equal(X, IMAGES[ids])


def test_binary_groups_and_drops_neutral():
    task = get_task("binary")
    _, y, _ = task.select(IMAGES, LABELS)
    assert task.class_names == ("negative", "positive")
    assert np.bincount(y).tolist() == [40 + 5 + 41 + 48, 72 + 31]
    assert task.balancing == "undersample"


def test_undersampling_equalises_training_classes_and_is_seeded():
    task = get_task("binary")
    X, y, _ = task.select(IMAGES, LABELS)
    Xb, yb, w = balance(X, y, "undersample", n_classes=2, seed=3)
    assert w is None
    assert np.bincount(yb).tolist() == [103, 103]
    Xb2, yb2, _ = balance(X, y, "undersample", n_classes=2, seed=3)
    assert np.array_equal(Xb, Xb2) and np.array_equal(yb, yb2)
    Xb3, _, _ = balance(X, y, "undersample", n_classes=2, seed=4)
    assert not np.array_equal(Xb, Xb3)


def test_oversampling_reaches_the_largest_class():
    Xb, yb, _ = balance(IMAGES, LABELS, "oversample", n_classes=7, seed=0)
    assert np.bincount(yb).tolist() == [72] * 7
    assert np.array_equal(Xb[: len(LABELS)], IMAGES)  # originals first, duplicates appended


def test_class_weights_match_sklearn():
    from sklearn.utils.class_weight import compute_class_weight

    expected = compute_class_weight("balanced", classes=np.arange(7), y=LABELS)
    assert np.allclose(class_weights(LABELS, 7), expected)
    _, _, sample_weight = balance(IMAGES, LABELS, "class_weight", n_classes=7)
    assert np.allclose(sample_weight, expected[LABELS])
    # every class then carries the same total weight
    assert np.allclose(np.bincount(LABELS, weights=sample_weight), len(LABELS) / 7)


def test_none_leaves_data_alone_and_unknown_strategy_fails():
    X, y, w = balance(IMAGES, LABELS, "none", n_classes=7)
    assert X is IMAGES and w is None
    with pytest.raises(FerBenchError, match="unknown balancing"):
        balance(IMAGES, LABELS, "smote", n_classes=7)
    assert set(BALANCING_STRATEGIES) == {"none", "class_weight", "undersample", "oversample"}


def test_user_can_register_a_task():
    task = Task("happy_vs_sad", class_names=("happy", "sad"), source_labels=((3,), (4,)), balancing="none")
    try:
        register_task(task)
        _, y, _ = get_task("happy_vs_sad").select(IMAGES, LABELS)
        assert np.bincount(y).tolist() == [72, 48]
        with pytest.raises(ValueError, match="already registered"):
            register_task(task)
    finally:
        _TASKS.pop("happy_vs_sad", None)


def test_invalid_task_definitions_are_rejected():
    with pytest.raises(ValueError, match="at most one class"):
        Task("bad", class_names=("a", "b"), source_labels=((0, 1), (1,)))
    with pytest.raises(ValueError, match="names for"):
        Task("bad", class_names=("a",), source_labels=((0,), (1,)))
