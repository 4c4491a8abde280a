"""Which features segments are built from, and the scikit-learn preprocessing that turns them into a
design matrix: skewed numbers are Yeo-Johnson transformed, missing values imputed, everything scaled;
categorical attributes are one-hot encoded (rare levels pooled).

By default segments describe what kind of customer someone is (the catalogue's "profile" features:
order value, buying rhythm, channel/category mix, engagement rates, satisfaction and the listed CRM
attributes), not where they are right now (recency, volume in a window, trends): that is the job of
lifecycle_stage and the churn model, and mixing it in would split every segment by activity level.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, PowerTransformer, StandardScaler

from seg_pipeline.errors import SegPipelineError
from seg_pipeline.features.catalogue import feature_role


@dataclass(frozen=True)
class DesignColumns:
    numeric: list[str]
    categorical: list[str]

    @property
    def all(self) -> list[str]:
        return [*self.numeric, *self.categorical]


def design_columns(features: pd.DataFrame, categorical: list[str], chosen: list[str] | None,
                   attributes: list[str]) -> DesignColumns:  # fmt: skip
    """The configured columns, else every profile column that has values; categorical ones kept apart."""
    available = [c for c in features.columns if c != "customer_key"]
    if chosen is not None:
        unknown = [c for c in chosen if c not in available]
        if unknown:
            raise SegPipelineError(
                f"config key segmentation.features names {', '.join(unknown)}, which customer_features does "
                f"not have; available: {', '.join(available)}"
            )
        columns = list(chosen)
    else:
        columns = [c for c in available if feature_role(c, attributes) == "profile"]
    columns = [c for c in columns if features[c].notna().any()]  # an all-missing column says nothing
    if not columns:
        raise SegPipelineError(
            "no feature to segment on: customer_features has no profile feature with values"
        )
    cats = [c for c in columns if c in categorical or not pd.api.types.is_numeric_dtype(features[c])]
    return DesignColumns([c for c in columns if c not in cats], cats)


def preprocessor(columns: DesignColumns) -> ColumnTransformer:
    numeric = Pipeline(
        [
            # Yeo-Johnson before imputing: it is fitted on the observed values only (NaN are ignored)
            ("unskew", PowerTransformer(method="yeo-johnson", standardize=True)),
            # the mean of a standardized column is 0: an unknown value adds no pull towards any segment
            ("impute", SimpleImputer(strategy="mean", keep_empty_features=True)),
            ("scale", StandardScaler()),
        ]
    )
    categorical = Pipeline(
        [
            ("impute", SimpleImputer(strategy="constant", fill_value="(missing)")),
            (
                "onehot",
                OneHotEncoder(handle_unknown="infrequent_if_exist", min_frequency=0.01, sparse_output=False),
            ),
        ]
    )
    return ColumnTransformer(
        [("numeric", numeric, columns.numeric), ("categorical", categorical, columns.categorical)],
        verbose_feature_names_out=False,
    )


def design_frame(features: pd.DataFrame, columns: DesignColumns) -> pd.DataFrame:
    """The chosen columns with categorical values as strings (scikit-learn wants one type per column)."""
    frame = features[columns.all].copy()
    for column in columns.categorical:
        text = frame[column].astype("string")
        frame[column] = text.astype(object).where(text.notna(), np.nan)
    for column in columns.numeric:
        frame[column] = frame[column].astype("float64")
    return frame
