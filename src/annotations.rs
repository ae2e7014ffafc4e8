//! STUB: filled in by the webhook core work.
