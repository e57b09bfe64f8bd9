"""Messages (MIME, calendar entries) and their transports (SMTP, an outbox folder)."""
