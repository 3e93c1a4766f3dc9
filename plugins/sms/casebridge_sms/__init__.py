"""casebridge's built-in sms plugin."""
