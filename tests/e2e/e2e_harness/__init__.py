"""Starts what the Pulumi program ships to its machines, on this host, from the rendered files:
a TLS-only Redis, a Parameter Store stand-in, the release, and every unit as systemd would."""
