//! STUB: rendering secret data to files (agent work).
