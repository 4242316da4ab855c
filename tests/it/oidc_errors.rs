//! Negative matrix (being written).
