"""The judging half: certificates, trust profiles, path validation, interceptor names, the verdict.

Nothing here touches the network, so saved evidence (`relaywatch analyze`) is judged exactly like a
live probe.
"""
