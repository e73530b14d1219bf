"""The churn model's input schema: column names, kinds and allowed category levels.

One source of truth for the data generator, the training script and the scoring service. The service
does not trust this module for the deployed model (it reads the model's signature and metadata), but
training writes both from here, so they agree.
"""

from __future__ import annotations

ID_COLUMN = "customerID"
LABEL_COLUMN = "Churn"
POSITIVE_LABEL = "Yes"
NEGATIVE_LABEL = "No"

YES_NO = ("No", "Yes")
NO_INTERNET = "No internet service"
NO_PHONE = "No phone service"
INTERNET_ADDONS = (
    "OnlineSecurity",
    "OnlineBackup",
    "DeviceProtection",
    "TechSupport",
    "StreamingTV",
    "StreamingMovies",
)

CATEGORY_LEVELS: dict[str, tuple[str, ...]] = {
    "gender": ("Female", "Male"),
    "Partner": YES_NO,
    "Dependents": YES_NO,
    "PhoneService": YES_NO,
    "MultipleLines": ("No", NO_PHONE, "Yes"),
    "InternetService": ("DSL", "Fiber optic", "No"),
    **{name: ("No", NO_INTERNET, "Yes") for name in INTERNET_ADDONS},
    "Contract": ("Month-to-month", "One year", "Two year"),
    "PaperlessBilling": YES_NO,
    "PaymentMethod": (
        "Bank transfer (automatic)",
        "Credit card (automatic)",
        "Electronic check",
        "Mailed check",
    ),
}
CATEGORICAL_COLUMNS: tuple[str, ...] = tuple(CATEGORY_LEVELS)
INTEGER_COLUMNS: tuple[str, ...] = ("SeniorCitizen", "tenure")
FLOAT_COLUMNS: tuple[str, ...] = ("MonthlyCharges", "TotalCharges")
NUMERIC_COLUMNS: tuple[str, ...] = INTEGER_COLUMNS + FLOAT_COLUMNS

# Column order of the public telco-churn data set (without the label).
INPUT_COLUMNS: tuple[str, ...] = (
    ID_COLUMN,
    "gender",
    "SeniorCitizen",
    "Partner",
    "Dependents",
    "tenure",
    "PhoneService",
    "MultipleLines",
    "InternetService",
    *INTERNET_ADDONS,
    "Contract",
    "PaperlessBilling",
    "PaymentMethod",
    "MonthlyCharges",
    "TotalCharges",
)
FEATURE_COLUMNS: tuple[str, ...] = tuple(c for c in INPUT_COLUMNS if c != ID_COLUMN)
