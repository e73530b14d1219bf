"""Synthetic customer-churn data with the telco-churn schema, generated with vectorised numpy.

Churn depends on the other columns the way it does in the public telco data set: month-to-month
contracts, short tenure, fiber optic internet, paying by electronic check, no tech support / online
security, paperless billing and high monthly charges raise it; partners, dependents and long
contracts lower it. Churn is drawn from a logistic model of these effects, so the problem stays far
from separable: a good model reaches a held-out ROC-AUC of about 0.9, the contract type alone about 0.74.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from scoring.examples.churn.schema import (
    CATEGORY_LEVELS,
    ID_COLUMN,
    INPUT_COLUMNS,
    INTERNET_ADDONS,
    LABEL_COLUMN,
    NEGATIVE_LABEL,
    NO_INTERNET,
    NO_PHONE,
    POSITIVE_LABEL,
)

_LETTERS = np.frombuffer(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ", dtype=np.uint8)
_DIGITS = np.frombuffer(b"0123456789", dtype=np.uint8)

# Probability that an internet customer has each add-on, for DSL and fiber respectively.
_ADDON_RATE = {
    "OnlineSecurity": (0.45, 0.30),
    "OnlineBackup": (0.45, 0.40),
    "DeviceProtection": (0.40, 0.45),
    "TechSupport": (0.45, 0.30),
    "StreamingTV": (0.35, 0.55),
    "StreamingMovies": (0.35, 0.55),
}
_ADDON_PRICE = {name: 5.0 for name in INTERNET_ADDONS} | {"StreamingTV": 9.5, "StreamingMovies": 9.5}


def _customer_ids(rng: np.random.Generator, n: int) -> np.ndarray:
    """IDs shaped like ``7590-VHVEG``: four digits, a dash, five capital letters."""
    chars = np.empty((n, 10), dtype=np.uint8)
    chars[:, :4] = _DIGITS[rng.integers(0, 10, size=(n, 4))]
    chars[:, 4] = ord("-")
    chars[:, 5:] = _LETTERS[rng.integers(0, 26, size=(n, 5))]
    return chars.view("S10").ravel().astype("U10").astype(object)


def _choice(rng: np.random.Generator, n: int, probs: tuple[float, ...]) -> np.ndarray:
    """Category codes drawn with the given probabilities (vectorised inverse CDF)."""
    cdf = np.cumsum(probs)
    return np.minimum(np.searchsorted(cdf / cdf[-1], rng.random(n), side="right"), len(probs) - 1)


def _categorical(column: str, codes: np.ndarray) -> pd.Categorical:
    return pd.Categorical.from_codes(codes, categories=list(CATEGORY_LEVELS[column]))


def generate(rows: int, seed: int = 0, *, label: bool = True) -> pd.DataFrame:
    """``rows`` customers; categorical columns have pandas ``category`` dtype (compact, fast to write)."""
    rng = np.random.default_rng(seed)
    n = rows
    yes_no = CATEGORY_LEVELS["Partner"].index  # level order is ("No", "Yes")
    senior = (rng.random(n) < 0.16).astype(np.int64)
    partner = rng.random(n) < 0.48
    dependents = rng.random(n) < np.where(partner, 0.5, 0.1)
    contract = _choice(rng, n, (0.55, 0.21, 0.24))  # month-to-month, one year, two year
    # Longer contracts go with longer tenure; month-to-month customers are mostly new.
    shape_a = np.array([0.7, 1.6, 3.0])[contract]
    shape_b = np.array([2.0, 1.4, 0.9])[contract]
    tenure = np.rint(rng.beta(shape_a, shape_b) * 72).astype(np.int64)
    phone = rng.random(n) < 0.9
    multiple = phone & (rng.random(n) < 0.47)
    internet = _choice(rng, n, (0.34, 0.44, 0.22))  # DSL, Fiber optic, No
    has_internet = internet != 2
    fiber = internet == 1
    paperless = rng.random(n) < 0.59
    payment = _choice(rng, n, (0.22, 0.21, 0.34, 0.23))  # bank, card, electronic check, mailed check

    charges = 20.0 + 5.0 * phone + 5.0 * multiple + np.array([25.0, 50.0, 0.0])[internet]
    addons: dict[str, np.ndarray] = {}
    for name in INTERNET_ADDONS:
        dsl_rate, fiber_rate = _ADDON_RATE[name]
        has = has_internet & (rng.random(n) < np.where(fiber, fiber_rate, dsl_rate))
        addons[name] = has
        charges += _ADDON_PRICE[name] * has
    monthly = np.round(np.clip(charges + rng.normal(0.0, 3.0, n), 18.25, 118.75), 2)
    total = np.round(monthly * tenure * rng.uniform(0.92, 1.08, n), 2)

    logit = (
        -2.3
        + np.array([1.5, 0.0, -1.2])[contract]
        - 0.045 * tenure
        + 0.9 * fiber
        - 0.5 * (internet == 2)
        + np.array([0.0, 0.0, 0.75, 0.1])[payment]
        + 0.55 * (has_internet & ~addons["TechSupport"])
        + 0.45 * (has_internet & ~addons["OnlineSecurity"])
        + 0.2 * (has_internet & ~addons["OnlineBackup"])
        + 0.25 * senior
        + 0.3 * paperless
        - 0.25 * partner
        - 0.3 * dependents
        + 0.015 * (monthly - 65.0)
        + 0.2 * multiple
    )
    churn = rng.random(n) < 1.0 / (1.0 + np.exp(-logit))

    def addon_codes(has: np.ndarray) -> np.ndarray:
        levels = CATEGORY_LEVELS["OnlineSecurity"]
        return np.where(has_internet, np.where(has, levels.index("Yes"), levels.index("No")), levels.index(NO_INTERNET))

    ml_levels = CATEGORY_LEVELS["MultipleLines"]
    columns: dict[str, object] = {
        ID_COLUMN: _customer_ids(rng, n),
        "gender": _categorical("gender", rng.integers(0, 2, n)),
        "SeniorCitizen": senior,
        "Partner": _categorical("Partner", partner.astype(np.int8) * yes_no("Yes")),
        "Dependents": _categorical("Dependents", dependents.astype(np.int8) * yes_no("Yes")),
        "tenure": tenure,
        "PhoneService": _categorical("PhoneService", phone.astype(np.int8)),
        "MultipleLines": _categorical(
            "MultipleLines",
            np.where(
                phone, np.where(multiple, ml_levels.index("Yes"), ml_levels.index("No")), ml_levels.index(NO_PHONE)
            ),
        ),
        "InternetService": _categorical("InternetService", internet),
        **{name: _categorical(name, addon_codes(addons[name])) for name in INTERNET_ADDONS},
        "Contract": _categorical("Contract", contract),
        "PaperlessBilling": _categorical("PaperlessBilling", paperless.astype(np.int8)),
        "PaymentMethod": _categorical("PaymentMethod", payment),
        "MonthlyCharges": monthly,
        "TotalCharges": total,
    }
    frame = pd.DataFrame(columns, columns=list(INPUT_COLUMNS))
    if label:
        frame[LABEL_COLUMN] = pd.Categorical.from_codes(
            churn.astype(np.int8), categories=[NEGATIVE_LABEL, POSITIVE_LABEL]
        )
    return frame
