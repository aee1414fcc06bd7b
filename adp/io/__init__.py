"""Sources and sinks: lakes (fsspec), SQL databases, xarray stores, atomic outputs."""
