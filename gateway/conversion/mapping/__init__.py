"""Building blocks of the declarative mapping engine."""
