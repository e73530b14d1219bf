"""A user's custom pyfunc model that answers with a dict of columns (MLflow models from code)."""

import numpy as np
import pandas as pd
from mlflow.models import set_model
from mlflow.pyfunc import PythonModel


class TotalsModel(PythonModel):
    """Adds two numbers and names the sign of the first, returned as ``{column: array}``."""

    def predict(self, context, model_input: pd.DataFrame, params=None) -> dict[str, np.ndarray]:
        a = model_input["a"].to_numpy(dtype=float)
        b = model_input["b"].to_numpy(dtype=float)
        return {"total": a + b, "sign": np.where(a >= 0, "non-negative", "negative").astype(object)}


set_model(TotalsModel())
