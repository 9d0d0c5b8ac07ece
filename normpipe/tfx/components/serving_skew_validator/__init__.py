"""ServingSkewValidator: component.py (spec, validation) and executor.py (the checks)."""
