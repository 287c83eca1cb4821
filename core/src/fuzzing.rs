//! Hooks for the fuzz targets in `fuzz/` (issue #7). Not part of the API.
