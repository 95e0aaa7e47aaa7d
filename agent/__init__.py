"""relaywatch: detects TLS interception, STARTTLS stripping and downgrades on the path to a mail relay.

The package follows the data flow: target -> probe (resolve, connect, dialogue, TLS) -> analysis
(chain, interceptor, verdict) -> export (report, JSON, metrics).
"""

__version__ = "0.1.0"
