"""casebridge's built-in creatio plugin."""
