"""The test-support models are what their names promise: the shapes a model-agnostic service must handle."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest
from mlflow.models import Model

from tests.support import models
from tests.support.models import UserModel


def _meta(model: UserModel) -> Model:
    return Model.load(str(model.path / "MLmodel"))


@pytest.mark.parametrize("name", models.VALID_NAMES)
def test_valid_models_have_a_column_signature_and_predict_their_inputs(
    user_model: Callable[[str], UserModel], name: str
) -> None:
    model = user_model(name)
    meta = _meta(model)
    assert meta.signature is not None and meta.signature.inputs.has_input_names()
    assert list(meta.signature.inputs.input_names()) == list(model.inputs.columns)
    answer = model.predict()
    assert len(answer if not isinstance(answer, dict) else next(iter(answer.values()))) == len(model.inputs)
    assert not (meta.metadata or {}).get("category_levels")


@pytest.mark.parametrize(
    ("name", "label_type", "n_classes"),
    [
        (models.IRIS_MULTICLASS, str, 3),
        (models.BINARY_INT_ONEHOT, np.integer, 2),
        (models.BOOL_LABEL, np.bool_, 2),
        (models.QUOTED_LABELS, str, 4),
    ],
)
def test_classifier_labels_keep_their_type(
    user_model: Callable[[str], UserModel], name: str, label_type: type, n_classes: int
) -> None:
    model = user_model(name)
    assert model.kind == models.CLASSIFIER
    assert len(model.classes) == n_classes
    assert all(isinstance(c, label_type) for c in model.classes)
    proba = model.predict_proba()
    assert proba.shape == (len(model.inputs), n_classes)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert set(model.predict()) <= set(model.classes)


def test_quoted_labels_need_quoting_and_are_all_predicted(user_model: Callable[[str], UserModel]) -> None:
    model = user_model(models.QUOTED_LABELS)
    assert set(model.predict()) == set(models.QUOTED)


def test_regressor_is_a_skops_tree_model_with_trusted_types(user_model: Callable[[str], UserModel]) -> None:
    model = user_model(models.GBR_SKOPS)
    flavor = _meta(model).flavors["sklearn"]
    assert flavor["serialization_format"] == "skops"
    assert "sklearn.tree._tree.Tree" in flavor["skops_trusted_types"]
    assert not hasattr(model.sklearn(), "predict_proba")
    assert model.predict().dtype == np.float64


def test_binary_model_uses_standard_transformers_only(user_model: Callable[[str], UserModel]) -> None:
    model = user_model(models.BINARY_INT_ONEHOT)
    assert _meta(model).flavors["sklearn"]["serialization_format"] == "skops"
    steps = [type(step).__name__ for _, step in model.sklearn().steps]
    assert steps == ["ColumnTransformer", "LogisticRegression"]


def test_pyfunc_models_answer_with_their_own_columns(user_model: Callable[[str], UserModel]) -> None:
    frame = user_model(models.PYFUNC_FRAME)
    answer = frame.predict()
    assert isinstance(answer, pd.DataFrame) and list(answer.columns) == ["price", "band", "heavy"]
    assert "sklearn" not in _meta(frame).flavors
    columns = user_model(models.PYFUNC_DICT)
    answer = columns.predict()
    assert isinstance(answer, dict) and sorted(answer) == ["sign", "total"]
    np.testing.assert_allclose(answer["total"], columns.inputs["a"] + columns.inputs["b"])


def test_invalid_models_are_what_a_service_must_refuse(user_model: Callable[[str], UserModel]) -> None:
    unsigned = user_model(models.NO_SIGNATURE)
    assert _meta(unsigned).signature is None and not unsigned.valid
    tensor = user_model(models.TENSOR_SIGNATURE)
    signature = _meta(tensor).signature
    assert signature is not None
    assert not signature.inputs.has_input_names() and not tensor.valid
    assert len(tensor.predict()) == len(tensor.inputs)


def test_unknown_name_is_refused(tmp_path: object) -> None:
    with pytest.raises(ValueError, match="unknown test model"):
        models.build("nope", tmp_path)  # type: ignore[arg-type]
