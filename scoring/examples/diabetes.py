"""The regression example: disease progression from the diabetes set (HistGradientBoostingRegressor).

Trained on scikit-learn's bundled diabetes set in its original units (nothing downloaded) and saved with
MLflow's default skops format. skops refuses to load types it does not know, so the types the model
holds are listed as ``skops_trusted_types`` when saving, as a user does when ``save_model`` asks for them.
:func:`frame` makes any number of plausible patients for sample files (bundled rows with a little noise).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import skops.io
from sklearn.datasets import load_diabetes
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.model_selection import train_test_split

from scoring.examples.common import save_example

DEFAULT_SEED = 7
TEST_FRACTION = 0.25
_NOISE = 0.05  # of each column's standard deviation


def dataset() -> tuple[pd.DataFrame, np.ndarray]:
    """The 442 bundled patients (age, sex, bmi, bp, s1..s6 in original units) and a progression score."""
    x, y = load_diabetes(return_X_y=True, as_frame=True, scaled=False)
    return x.astype(np.float64), y.to_numpy(dtype=np.float64)


def frame(rows: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x, _ = dataset()
    values = x.to_numpy()
    picked = values[rng.integers(0, len(x), rows)]
    noise = rng.normal(0.0, _NOISE, picked.shape) * values.std(axis=0)
    out = pd.DataFrame((picked + noise).round(2), columns=x.columns)
    out["sex"] = picked[:, list(x.columns).index("sex")]  # a category (1 or 2): no noise
    return out


def train(seed: int = DEFAULT_SEED) -> tuple[HistGradientBoostingRegressor, float]:
    """Fitted regressor and its R² on a held-out split."""
    x, y = dataset()
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=TEST_FRACTION, random_state=seed)
    model = HistGradientBoostingRegressor(max_iter=150, learning_rate=0.05, max_leaf_nodes=15, random_state=seed)
    model.fit(x_train, y_train)
    return model, float(model.score(x_test, y_test))


def train_and_save(out: Path, rows: int | None = None, seed: int | None = None) -> str:
    if rows is not None:
        raise SystemExit("the regression example trains on the 442 bundled diabetes rows; --rows does not apply")
    model, r2 = train(DEFAULT_SEED if seed is None else seed)
    x, _ = dataset()
    trusted = skops.io.get_untrusted_types(data=skops.io.dumps(model))
    save_example(model, out, x, {"holdout_r2": round(r2, 4)}, skops_trusted_types=trusted)
    return f"held-out R²: {r2:.4f}"
