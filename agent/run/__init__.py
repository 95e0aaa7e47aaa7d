"""`relaywatch run`: the long-running agent (config, schedule, state, web endpoints)."""
