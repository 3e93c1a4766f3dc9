"""In-process plugins and helpers the tests share."""
