"""Self-contained HTML reports: figures and images embedded as base64, readable offline in any browser."""
