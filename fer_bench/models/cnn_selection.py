"""The CNN's epoch selection on the validation data (PublicTest), as a state that a checkpoint stores: which epoch
and which weights (trained, or their moving average) are best so far, when the plateau schedule halves the rate,
when early stopping ends training, and the summary fit records in selected_params_. Pure bookkeeping: the
estimator (cnn.py) trains, evaluates and applies what this decides.
"""

from __future__ import annotations

PLATEAU_PATIENCE = 3  # schedule="plateau": epochs without PublicTest improvement before the rate is halved
PLATEAU_FACTOR = 0.5


def new_training_state() -> dict:
    """The state of a training that has not run an epoch (JSON-serialisable: checkpoints store it)."""
    return {"epoch": 0, "best_val_accuracy": None, "best_epoch": None, "epochs_without_improvement": 0,
            "plateau_wait": 0, "finished": False, "stopped_early": False, "history": [], "resumed_from_epoch": None}


def improved_now(state: dict) -> bool:
    """Whether the epoch just trained is the best so far (its weights are then the ones to keep)."""
    return state["best_epoch"] is not None and state["best_epoch"] == state["epoch"]


def update_selection(state: dict, candidates: list, *, plateau: bool, patience: int | None) -> tuple:
    """Record the epoch just trained in `state`: its best candidate ((kind, validation accuracy, weights or None);
    a later candidate, the average, only when strictly better) becomes the best so far when it beats it; the
    plateau counter and early stopping follow. Returns (the candidate if it improved on the best so far else None,
    whether the learning rate is to be multiplied by PLATEAU_FACTOR now)."""
    best = candidates[0]
    for other in candidates[1:]:
        if other[1] > best[1]:
            best = other
    kind, accuracy, _ = best
    improved = state["best_val_accuracy"] is None or accuracy > state["best_val_accuracy"]
    if improved:
        state.update(best_val_accuracy=accuracy, best_epoch=state["epoch"], best_weights_kind=kind,
                     epochs_without_improvement=0, plateau_wait=0)
    else:
        state["epochs_without_improvement"] += 1
        state["plateau_wait"] += 1
    reduce_rate = plateau and state["plateau_wait"] >= PLATEAU_PATIENCE
    if reduce_rate:
        state["plateau_wait"] = 0
    if patience is not None and state["epochs_without_improvement"] >= patience:
        state["stopped_early"] = True
    return (best if improved else None), reduce_rate


def selection_summary(state: dict, *, validated: bool, ema: bool, n_train: int) -> dict:
    """What the training chose and how it went, for selected_params_: the kept epoch and weights (the last epoch,
    or its average with ema, without validation data), epochs run, early stop, the final learning rate, a resume,
    seconds and images/s of training."""
    history = state["history"]
    seconds = sum(record["seconds"] for record in history)
    return {
        "best_epoch": state["best_epoch"] if validated else state["epoch"],
        "best_val_accuracy": state["best_val_accuracy"],
        "weights": state.get("best_weights_kind", "trained") if validated else ("ema" if ema else "trained"),
        "epochs_run": state["epoch"],
        "stopped_early": state["stopped_early"],
        "final_learning_rate": history[-1].get("lr") if history else None,
        "resumed_from_epoch": state["resumed_from_epoch"],
        "train_seconds": seconds,
        "train_images_per_s": n_train * state["epoch"] / seconds if seconds > 0 else None,
        "selection": "best PublicTest accuracy" if validated else "last epoch",
    }
