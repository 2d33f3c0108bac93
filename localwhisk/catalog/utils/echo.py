def main(params):
    """Returns its parameters unchanged."""
    return params
