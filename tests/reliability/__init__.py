"""Reliability tests: hostile inputs and faults (issue 16); see docs/reliability.md."""
