"""bdc tables mirrored from the AIND dynamic-foraging parquet database."""
