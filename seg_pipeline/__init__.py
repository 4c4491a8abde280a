"""seg-pipeline: customer segmentation and churn prediction as a Dagster asset graph."""

__version__ = "0.1.0"
