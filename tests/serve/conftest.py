"""The serving tests share ``trained_experiment`` (tests/conftest.py): digits, k=2, addition/subtraction."""
