"""How a report is drawn and written, whatever it shows: blocks rendered to Markdown and HTML,
the figures' theme, panels and colours."""
