"""casebridge's built-in email plugin."""
