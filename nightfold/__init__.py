"""nightfold: nightly batch analytics over HBase."""

__version__ = "0.1.0"
