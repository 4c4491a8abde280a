"""Stage 6: churn labels, model training and calibration, registry gate, scores, drivers and tiers."""
