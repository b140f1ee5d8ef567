"""`kind: unconditional`: train.py (its trainer and MLflow model), sample.py (its sample files),
evaluate.py (its metrics)."""
