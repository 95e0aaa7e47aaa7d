"""A self-contained lab on loopback: PKI, a relay that behaves like Exchange Online, interceptors,
strippers and hostile servers. `relaywatch demo` runs it; the tests reuse it."""
