"""SHAP explanations of flagged anomalies: which input columns (and look-back steps) drove them."""
