"""What a run leaves to read: the trace, summary.json, report.md, report.html and plots."""
