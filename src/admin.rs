//! STUB: admin port: /healthz, /readyz, /metrics (server work).
