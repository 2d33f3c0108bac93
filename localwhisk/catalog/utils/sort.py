def main(params):
    """Sorts `lines` as strings."""
    lines = sorted(str(line) for line in params.get("lines") or [])
    return {"lines": lines, "length": len(lines)}
