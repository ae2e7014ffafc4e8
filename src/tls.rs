//! STUB: TLS material loading and hot reload (server work).
