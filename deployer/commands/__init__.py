"""Click commands; each module is a thin layer over library functions."""
