"""The local platform: resources in NATS KV, replicas as processes on this machine."""
