"""The network half, like blackbox_exporter's prober/: one module per protocol (smtp.py, imap.py,
pop3.py) behind one dialogue, driven by session.py through the same phases: connect, greeting,
capabilities, STARTTLS, handshake (tls.py), after TLS. This package file stays empty so that importing
options.py or limits.py does not load the TLS stack."""
