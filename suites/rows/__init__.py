"""The result row: its fields and types, the names it spells, its assembly and files.

Nothing here imports torch, so reading rows (reports/) needs only this package.
"""
