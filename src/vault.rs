//! STUB: Vault/OpenBao client edge (agent work).
