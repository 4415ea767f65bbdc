"""The CNN's epoch selection (fer_bench/models/cnn_selection.py) as pure bookkeeping: no network needed."""

from __future__ import annotations

from fer_bench.models.cnn_selection import (
    PLATEAU_PATIENCE,
    improved_now,
    new_training_state,
    selection_summary,
    update_selection,
)


def trained_epoch(state, accuracy, ema_accuracy=None, seconds=10.0):
    """Record an epoch as CNNClassifier._train_epoch does, and return its candidates."""
    state["history"].append({"epoch": state["epoch"] + 1, "seconds": seconds, "lr": 0.1})
    state["epoch"] += 1
    candidates = [("trained", accuracy, None)]
    if ema_accuracy is not None:
        candidates.append(("ema", ema_accuracy, ["averaged weights"]))
    return candidates


def test_the_best_epoch_and_its_weights_are_kept_and_ties_keep_the_earlier():
    state = new_training_state()
    improved, _ = update_selection(state, trained_epoch(state, 0.5), plateau=False, patience=None)
    assert improved == ("trained", 0.5, None) and improved_now(state)
    improved, _ = update_selection(state, trained_epoch(state, 0.5), plateau=False, patience=None)
    assert improved is None and not improved_now(state) and state["best_epoch"] == 1
    improved, _ = update_selection(state, trained_epoch(state, 0.6), plateau=False, patience=None)
    assert improved[1] == 0.6 and state["best_epoch"] == 3 and state["epochs_without_improvement"] == 0


def test_the_average_wins_only_when_strictly_better():
    state = new_training_state()
    improved, _ = update_selection(state, trained_epoch(state, 0.5, ema_accuracy=0.5), plateau=False, patience=None)
    assert improved[0] == "trained" and state["best_weights_kind"] == "trained"
    improved, _ = update_selection(state, trained_epoch(state, 0.55, ema_accuracy=0.58), plateau=False,
                                   patience=None)
    assert improved == ("ema", 0.58, ["averaged weights"]) and state["best_weights_kind"] == "ema"


def test_the_plateau_schedule_and_early_stopping_follow_epochs_without_improvement():
    state = new_training_state()
    update_selection(state, trained_epoch(state, 0.5), plateau=True, patience=PLATEAU_PATIENCE + 1)
    reductions = []
    for _ in range(PLATEAU_PATIENCE + 1):
        _, reduce_rate = update_selection(state, trained_epoch(state, 0.4), plateau=True,
                                          patience=PLATEAU_PATIENCE + 1)
        reductions.append(reduce_rate)
    # the rate is cut once PLATEAU_PATIENCE epochs passed without improvement, then the count starts again
    assert reductions == [False] * (PLATEAU_PATIENCE - 1) + [True, False]
    assert state["stopped_early"] and state["epochs_without_improvement"] == PLATEAU_PATIENCE + 1
    _, reduce_rate = update_selection(new_training_state() | {"epoch": 1, "plateau_wait": 5, "best_val_accuracy": 0.9,
                                                               "best_epoch": 1}, [("trained", 0.1, None)],
                                      plateau=False, patience=None)
    assert not reduce_rate  # other schedules never ask for it


def test_the_summary_names_the_kept_epoch_with_or_without_validation():
    state = new_training_state()
    for accuracy in (0.5, 0.7, 0.6):
        update_selection(state, trained_epoch(state, accuracy), plateau=False, patience=None)
    summary = selection_summary(state, validated=True, ema=False, n_train=100)
    assert summary["best_epoch"] == 2 and summary["best_val_accuracy"] == 0.7 and summary["epochs_run"] == 3
    assert summary["train_seconds"] == 30.0 and summary["train_images_per_s"] == 10.0
    assert summary["selection"] == "best PublicTest accuracy" and summary["weights"] == "trained"
    unvalidated = selection_summary(state, validated=False, ema=True, n_train=100)
    assert unvalidated["best_epoch"] == 3 and unvalidated["weights"] == "ema"
    assert unvalidated["selection"] == "last epoch"
