"""What on this host intercepts TLS: processes of known products, the owner of the local end of a
probe's connection, and interception CAs in the host's trust stores."""
