"""The steps of an exchange, one module each, in the order the pipeline runs them
(gateway/exchange/pipeline.py is the one place that order is written)."""
