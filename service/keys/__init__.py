"""API keys: minted here, kept as hashes, checked by `service.auth` on every request."""
