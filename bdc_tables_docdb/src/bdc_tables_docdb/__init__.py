"""bdc tables built from the AIND DocDB metadata API."""
