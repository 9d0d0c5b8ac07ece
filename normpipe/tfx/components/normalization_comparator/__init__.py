"""NormalizationComparator: component.py (spec, validation) and executor.py (the Beam work)."""
