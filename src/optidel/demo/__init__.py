"""The one-command demo: select -> pre-train -> fine-tune -> summary, offline, on an embedded default."""
