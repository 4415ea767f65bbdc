"""fer-bench plugin: the CNN recipe's ablation variants (docs/cnn-recipe.md), one registered model each.

    fer-bench run --plugin benchmarks/cnn_recipe_variants.py --data PATH --tasks 7class \
        --models cnn_recipe,cnn_no_erasing --out /somewhere/ablation --no-report

Every variant is the default `cnn` with one ingredient changed, so each row of the ablation is one change.
Every choice is made on PublicTest (validation_data) as usual; read PublicTest numbers only (params.json
"selected" and "history") when comparing variants. With --quick the quick configuration is the base.

Rows that one run of cnn_recipe already gives (no separate run needed): the trained weights alone (the
history's val_accuracy, i.e. without the moving average), the moving average alone (ema_val_accuracy) and 1, 2
or 10 test views (selected.val_accuracy_by_views).
"""

from __future__ import annotations

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
