"""A user's custom pyfunc model that answers with a DataFrame of its own columns (MLflow models from code)."""

import numpy as np
import pandas as pd
from mlflow.models import set_model
from mlflow.pyfunc import PythonModel


class QuoteModel(PythonModel):
    """Prices a shipment: a number, a text band and a flag per row, as a DataFrame."""

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        price = model_input["weight"].to_numpy(dtype=float) * 2.5 + np.where(model_input["express"], 10.0, 0.0)
        return pd.DataFrame(
            {
                "price": price,
                "band": np.where(price > 20.0, "high", "low").astype(object),
                "heavy": model_input["weight"].to_numpy(dtype=float) > 5.0,
            }
        )


set_model(QuoteModel())
