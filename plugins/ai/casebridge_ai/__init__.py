"""casebridge's AI plugin: assistant answers, handoff decisions, summaries and AI-filled fields."""
