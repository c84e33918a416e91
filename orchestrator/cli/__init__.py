"""Command-line entry points (click). Heavy modules are imported only by the command that uses them."""
