"""Record-to-row transforms for the DocDB tables, one concept (table) per module."""
