"""fer-bench plugin: the CNN recipe's ablation variants (docs/cnn-recipe.md), one registered model each.

    fer-bench run --plugin benchmarks/cnn_recipe_variants.py --data PATH --tasks 7class \
        --models cnn_recipe,cnn_no_erasing --out /somewhere/ablation --no-report

Every variant is the default `cnn` with one ingredient changed, so each row of the ablation is one change.
Every choice is made on PublicTest (validation_data) as usual; read PublicTest numbers only (params.json
"selected" and "history") when comparing variants. With --quick the quick configuration is the base.

Rows that one run of cnn_recipe already gives (no separate run needed): the trained weights alone (the
history's val_accuracy, i.e. without the moving average), the moving average alone (ema_val_accuracy) and 1, 2
or 10 test views (selected.val_accuracy_by_views).

`python benchmarks/cnn_recipe_variants.py OUT...` prints those PublicTest rows for every CNN cell under the
given --out folders, finished (params.json) or still training (the checkpoint's state.json). It reads nothing
else: not predictions.csv, which holds PrivateTest.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from fer_bench.models import register_model
from fer_bench.models.cnn import make_cnn

#: the recipe before issue 15: full 48x48 faces, shift augmentation, 30 epochs, one view, no erasing, no EMA
OLD_RECIPE = dict(crop_size=None, erasing=0.0, ema=None, shift=0.1, epochs=30, test_views=1)

VARIANTS = {
    "cnn_recipe": {},                                   # the new default, as `cnn`
    "cnn_old_recipe": OLD_RECIPE,                       # for the fit-time ratio and the baseline row
    "cnn_no_crop": {"crop_size": None},                 # full faces (views: 1 or 2)
    "cnn_no_erasing": {"erasing": 0.0},
    "cnn_strong_erasing": {"erasing_area": (0.02, 0.33)},
    "cnn_no_ema": {"ema": None},
    "cnn_40_epochs": {"epochs": 40},
    "cnn_shift": {"shift": 0.1},                        # shift on top of the crops
    "cnn_sgd": {"optimizer": "sgd", "learning_rate": 0.02, "weight_decay": 5e-4},  # Nesterov momentum 0.9
}


def _factory(overrides: dict):
    def make(seed=0, quick=False, **params):
        # quick keeps its own few epochs (a smoke check), whatever the variant's schedule
        changes = {k: v for k, v in overrides.items() if not (quick and k == "epochs")}
        return make_cnn(seed=seed, quick=quick, **{**changes, **params})

    return make


for _name, _overrides in VARIANTS.items():
    register_model(_name, _factory(_overrides), requires=("tensorflow",), overwrite=True)


def _percent(value) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def publictest_rows(out: Path) -> list[str]:
    """One markdown row per CNN cell under `out`: PublicTest accuracies only."""
    rows = []
    for params_file in sorted(Path(out).glob("runs/*/*/seed*/params.json")):
        saved = json.loads(params_file.read_text())
        selected, history = saved.get("selected", {}), saved.get("history", [])
        if "best_epoch" not in selected:
            continue
        task, model, seed = params_file.parts[-4:-1]
        rows.append(_row(f"{task} {model} {seed}", history, selected, "finished"))
    for state_file in sorted(Path(out).glob("checkpoints/*/*/seed*/state.json")):
        state = json.loads(state_file.read_text())["state"]
        if state.get("finished"):
            continue
        task, model, seed = state_file.parts[-4:-1]
        rows.append(_row(f"{task} {model} {seed}", state["history"], {"best_epoch": state["best_epoch"],
                         "best_val_accuracy": state["best_val_accuracy"],
                         "weights": state.get("best_weights_kind")}, f"training, epoch {state['epoch']}"))
    return rows


def _row(cell: str, history: list[dict], selected: dict, status: str) -> str:
    trained = max((r["val_accuracy"] for r in history if r.get("val_accuracy") is not None), default=None)
    ema = max((r["ema_val_accuracy"] for r in history if r.get("ema_val_accuracy") is not None), default=None)
    views = selected.get("val_accuracy_by_views") or {}
    minutes = sum(r.get("seconds") or 0 for r in history) / 60
    return (f"| {cell} | {status} | {len(history)} | {selected.get('best_epoch')} | {selected.get('weights')} | "
            f"{_percent(trained)} | {_percent(ema)} | {_percent(views.get('1'))} | {_percent(views.get('2'))} | "
            f"{_percent(views.get('10'))} | {selected.get('test_views', '–')} | {minutes:.0f} |")


if __name__ == "__main__":
    print("| cell | status | epochs run | best epoch | weights kept | best trained % (1 view) | best EMA % "
          "(1 view) | kept, 1 view % | 2 views % | 10 views % | views used | fit minutes |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for folder in sys.argv[1:]:
        print("\n".join(publictest_rows(Path(folder))))
